package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles accepted in Config.Profile.
const (
	ProfileFast = "fast" // sub-second failure detection on a LAN (the default)
	ProfileLAN  = "lan"  // memberlist.DefaultLANConfig
	ProfileWAN  = "wan"  // memberlist.DefaultWANConfig
)

// KeySize is the length of each of Config.SecretKeys: AES-256-GCM.
const KeySize = 32

// Config is everything a Ring needs, as plain values. The daemon fills it
// from the [gossip] and [node] sections of hostlb.toml.
type Config struct {
	// NodeName names this node in the ring; it must be unique.
	NodeName string
	// Bind is the UDP+TCP address to listen on (ignored with a Transport).
	// Port 0 picks a free port (tests).
	Bind netip.AddrPort
	// Advertise is the address peers use to reach this node. Zero means
	// the bind address, or memberlist's choice of a private IP when the bind
	// address is unspecified.
	Advertise netip.AddrPort
	// Join lists "host:port" seeds. The ring keeps trying them while it is
	// alone.
	Join []string
	// SecretKeys are the 32-byte AES-256-GCM ring keys: the first
	// encrypts, every one decrypts (a rolling rotation; see SetKeys). Empty
	// only with InsecurePlaintext.
	SecretKeys        [][]byte
	InsecurePlaintext bool
	// Cluster is memberlist's label: packets and streams carry it (and,
	// encrypted, authenticate it), and a node drops whatever comes with
	// another one, so rings of two clusters that share a key never merge.
	// It must be the same on every node; "" = no label.
	Cluster string
	// Profile is ProfileFast (also ""), ProfileLAN or ProfileWAN.
	Profile string

	// Initial metadata; change it later with SetLabels and SetHealth.
	Labels  map[string]string
	Version string
	Health  Health
	// HeartbeatPort is gossiped in the metadata (Meta.HeartbeatPort): the
	// UDP port, on this node's advertised IP, where its heartbeat listens;
	// 0 for none.
	HeartbeatPort uint16

	// Logger receives the ring's and memberlist's logs. Nil discards them.
	Logger *slog.Logger
	// Transport replaces memberlist's UDP/TCP NetTransport (gossiptest).
	// The Ring shuts it down when it stops.
	Transport memberlist.Transport

	// OnChange is called after any member joins, leaves, dies, or changes
	// its metadata or announced set. It runs on the Ring's own goroutine,
	// never while a memberlist lock is held, one call at a time; it should
	// not block (reconcile.Loop.Trigger is the intended callee).
	OnChange func()
	// OnEvent, if set, is called before OnChange with each member event,
	// in order, on the same goroutine. For metrics and tests.
	OnEvent func(Event)
	// OnProbe, if set, is told the round-trip time of every probe of
	// another member that member acked directly (memberlist's
	// PingDelegate: indirect probes and failed ones are not measured). It
	// runs on memberlist's probe goroutine and must not block. For
	// metrics.
	OnProbe func(node string, rtt time.Duration)

	// Overrides of the profile's timing; zero keeps the profile's value.
	RejoinInterval   time.Duration // how often to re-join dead members and missing seeds
	LeaveTimeout     time.Duration // how long Leave waits for its broadcast to go out
	ReconnectTimeout time.Duration // how long a dead member is retried and kept in Members
}

// timing is the Ring's own schedule, beside memberlist's.
type timing struct {
	rejoin      time.Duration // period of the maintenance pass
	minBackoff  time.Duration // first retry when the node is alone
	leave       time.Duration // Leave and UpdateNode broadcast wait
	reconnect   time.Duration
	staleRepair time.Duration // how long an announced set may lag its meta before a pull
	metaConfirm time.Duration // how long a metadata update may go unsent before it is re-sent
}

// profileConfig returns memberlist's configuration and the Ring's timing for
// a profile. doc.go explains the fast numbers.
func profileConfig(profile string) (*memberlist.Config, timing, error) {
	switch profile {
	case "", ProfileFast:
		c := memberlist.DefaultLANConfig()
		c.ProbeInterval = 100 * time.Millisecond
		c.ProbeTimeout = 50 * time.Millisecond
		c.SuspicionMult = 3
		c.SuspicionMaxTimeoutMult = 2
		c.IndirectChecks = 3
		c.GossipInterval = 50 * time.Millisecond
		c.GossipNodes = 3
		c.RetransmitMult = 4
		c.TCPTimeout = time.Second
		c.PushPullInterval = 5 * time.Second
		c.AwarenessMaxMultiplier = 8
		c.GossipToTheDeadTime = 15 * time.Second
		return c, timing{
			rejoin:      2 * time.Second,
			minBackoff:  100 * time.Millisecond,
			leave:       time.Second,
			reconnect:   24 * time.Hour,
			staleRepair: time.Second,
			metaConfirm: 250 * time.Millisecond,
		}, nil
	case ProfileLAN:
		return memberlist.DefaultLANConfig(), timing{
			rejoin:      30 * time.Second,
			minBackoff:  time.Second,
			leave:       2 * time.Second,
			reconnect:   24 * time.Hour,
			staleRepair: 5 * time.Second,
			metaConfirm: time.Second,
		}, nil
	case ProfileWAN:
		return memberlist.DefaultWANConfig(), timing{
			rejoin:      60 * time.Second,
			minBackoff:  2 * time.Second,
			leave:       5 * time.Second,
			reconnect:   24 * time.Hour,
			staleRepair: 15 * time.Second,
			metaConfirm: 2500 * time.Millisecond,
		}, nil
	}
	return nil, timing{}, fmt.Errorf("gossip profile %q: want %q, %q or %q", profile, ProfileFast, ProfileLAN, ProfileWAN)
}

// validate returns every problem with c at once.
func (c *Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	}
	if _, _, err := profileConfig(c.Profile); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.InsecurePlaintext && len(c.SecretKeys) > 0:
		errs = append(errs, errors.New("both a secret key and insecure_plaintext are set"))
	case !c.InsecurePlaintext:
		if err := checkKeys(c.SecretKeys); err != nil {
			errs = append(errs, fmt.Errorf("%w; set insecure_plaintext to run without one", err))
		}
	}
	if len(c.Cluster) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("cluster name is %d bytes, more than %d", len(c.Cluster), memberlist.LabelMaxSize))
	}
	if c.Transport == nil && !c.Bind.IsValid() {
		errs = append(errs, errors.New("bind address is not set"))
	}
	if c.Health > HealthDraining {
		errs = append(errs, fmt.Errorf("unknown health %d", c.Health))
	}
	for _, d := range []time.Duration{c.RejoinInterval, c.LeaveTimeout, c.ReconnectTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("negative duration %v", d))
		}
	}
	return errors.Join(errs...)
}

// checkKeys says what is wrong with a key set, nil if nothing is.
func checkKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("no secret key")
	}
	for i, k := range keys {
		if len(k) != KeySize {
			return fmt.Errorf("secret key %d is %d bytes, want %d (AES-256)", i+1, len(k), KeySize)
		}
	}
	return nil
}

// newKeyring builds memberlist's keyring: keys[0] is the primary.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	kr, err := memberlist.NewKeyring(cloneKeys(keys[1:]), bytes.Clone(keys[0]))
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return kr, nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// memberlistConfig builds memberlist's configuration for r.
// The returned writer is memberlist's log bridge, to close after Shutdown.
func (r *Ring) memberlistConfig() (*memberlist.Config, *logWriter, error) {
	c, _, err := profileConfig(r.cfg.Profile)
	if err != nil {
		return nil, nil, err
	}
	c.Name = r.cfg.NodeName
	// memberlist compresses every message it sends (LZW) unless told not
	// to, and a new LZW writer allocates a 64 KiB table: each probe and
	// ack cost a node ~2 MB/s of garbage at rest, most of its CPU at rest.
	// Announced sets are addresses, which LZW barely shrinks. A receiver
	// still decompresses what an older node sends.
	c.EnableCompression = false
	if r.cfg.Bind.IsValid() {
		c.BindAddr = r.cfg.Bind.Addr().String()
		c.BindPort = int(r.cfg.Bind.Port())
		// memberlist advertises BindPort unless told otherwise.
		c.AdvertisePort = c.BindPort
	}
	if r.cfg.Advertise.IsValid() {
		c.AdvertiseAddr = r.cfg.Advertise.Addr().String()
		c.AdvertisePort = int(r.cfg.Advertise.Port())
	}
	if r.keyring != nil {
		c.Keyring = r.keyring
		c.GossipVerifyIncoming = true
		c.GossipVerifyOutgoing = true
	}
	c.Label = r.cfg.Cluster
	c.Transport = r.cfg.Transport
	c.Delegate = (*delegate)(r)
	c.Events = (*events)(r)
	c.Ping = (*pinger)(r)
	c.Conflict = (*conflicts)(r)
	var w *logWriter
	c.Logger, w = newStdLogger(r.log)
	c.LogOutput = nil
	return c, w, nil
}

// DetectionBound is the longest a crashed member of a ring of n members can
// stay alive in the view of the others under profile when nobody confirms
// the suspicion (doc.go, "Timing"): the wait for the next probe, the probe,
// the longest suspicion timeout, and two gossip rounds to spread the
// verdict. Fast profile: 900 ms up to 10 members, ≈ 1.1 s at 20. A member
// that something else (the heartbeat) lost longer ago than this and that
// the ring still holds alive is alive. Zero for an unknown profile.
func DetectionBound(profile string, n int) time.Duration {
	c, _, err := profileConfig(profile)
	if err != nil {
		return 0
	}
	scale := max(1, math.Log10(float64(max(n, 1))))
	suspicion := time.Duration(float64(c.SuspicionMult*c.SuspicionMaxTimeoutMult) * scale * float64(c.ProbeInterval))
	return 2*c.ProbeInterval + suspicion + 2*c.GossipInterval
}
