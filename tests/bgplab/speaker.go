package bgplab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// speakerEnv carries a SpeakerConfig (JSON, or "@" and the path of a JSON
// file) to a child of the test binary and makes it a speaker instead of a
// test run.
const speakerEnv = "HOSTLB_BGPLAB_SPEAKER"

// speakerReady is the line a speaker prints once its peers and paths are
// configured.
const speakerReady = "bgplab speaker: ready"

// speakerLearned starts the line a speaker prints for each best path it
// learned from a peer.
const speakerLearned = "bgplab speaker: learned"

// speakerDrain is how long a speaker keeps running after it withdrew its
// paths on SIGTERM.
const speakerDrain = 500 * time.Millisecond

// speakerIdleAfterReset is how long, in whole seconds, a speaker's session
// stays Idle after the speaker reset it itself. GoBGP's native BFD resets
// the session with a Cease/Administrative Reset when its BFD session
// expires or the remote one goes down, and GoBGP then waits
// IdleHoldTimeAfterReset before it connects again: 30 s by default, as
// long as the lab waits for sessions (upBound). With ListenPort -1 the
// router cannot connect either, so one BFD flap while the lab comes up
// kept a session Active, its BFD down, past the deadline. (A reset the
// router sends is followed by GoBGP's fixed 5 s idle instead.)
const speakerIdleAfterReset = 1

// SpeakerConfig configures a plain GoBGP speaker on a node: the lab's
// reference for what a node is expected to do, independent of hostlbd.
type SpeakerConfig struct {
	ASN      uint32
	RouterID netip.Addr
	Peers    []SpeakerPeer
	// Prefixes are advertised to every peer of their family, with the
	// node's own address as next hop.
	Prefixes []netip.Prefix
	NextHop4 netip.Addr
	NextHop6 netip.Addr
}

// SpeakerPeer is one neighbour of a speaker.
type SpeakerPeer struct {
	Address  netip.Addr
	ASN      uint32
	Password string
	// HoldTime and KeepaliveTime in whole seconds; 0 = GoBGP's default.
	HoldTime, KeepaliveTime time.Duration
	// BFD enables GoBGP's native BFD (RFC 5880/5881) for the peer.
	BFD *BFDTimers
	// BFDWhileEstablished enables BFD only while the BGP session is
	// established. FRR 8.4's bgpd replaces its BFD session when BGP comes
	// up (it re-registers with the session's local address: FRR PR
	// #17344), and GoBGP v4.8.0 resets BGP when the BFD session it was
	// building expires or the remote one goes down, even if it never was
	// up: the two then flap forever. Starting BFD after BGP is up meets
	// FRR's final session. BFD is off again while the session is down; a
	// BFD flap that resets the session still costs only
	// speakerIdleAfterReset before GoBGP reconnects and turns BFD back on.
	BFDWhileEstablished bool
}

// BFDTimers are a BFD session's intervals.
type BFDTimers struct {
	MinRx, MinTx time.Duration
	Multiplier   uint8
}

// DefaultBFD is the lab's BFD: 100 ms × 3, a 300 ms detection time.
var DefaultBFD = BFDTimers{MinRx: 100 * time.Millisecond, MinTx: 100 * time.Millisecond, Multiplier: 3}

// RunSpeakerIfChild makes the test binary a GoBGP speaker when the lab
// started it as one (StartSpeaker), and exits; otherwise it returns at
// once. Call it first in TestMain.
func RunSpeakerIfChild() {
	raw, ok := os.LookupEnv(speakerEnv)
	if !ok {
		return
	}
	// "@path": the config is in a file (StartSpeaker), since one
	// environment string is limited to 128 KiB (MAX_ARG_STRLEN).
	if path, ok := strings.CutPrefix(raw, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bgplab speaker: config: %v\n", err)
			os.Exit(2)
		}
		raw = string(b)
	}
	var cfg SpeakerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bgplab speaker: config: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := runSpeaker(ctx, &cfg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bgplab speaker: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runSpeaker(ctx context.Context, cfg *SpeakerConfig) error {
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s := server.NewBgpServer(server.LoggerOption(log, level))
	go s.Serve()
	defer s.Stop()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: -1, // outgoing sessions only, like hostlbd's default
	}}); err != nil {
		return fmt.Errorf("start BGP: %w", err)
	}
	apiPeers := map[netip.Addr]func(bfd bool) *api.Peer{}
	// states carries session state changes to the goroutine that turns BFD
	// on and off (BFDWhileEstablished): a watch callback must not call
	// back into the server.
	type change struct {
		peer        netip.Addr
		established bool
	}
	states := make(chan change, 64)
	if err := s.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type == apiutil.PEER_EVENT_STATE {
				log.Info("peer state", "peer", ev.Peer.State.NeighborAddress, "state", ev.Peer.State.SessionState.String())
				select {
				case states <- change{ev.Peer.State.NeighborAddress, ev.Peer.State.SessionState == bgp.BGP_FSM_ESTABLISHED}:
				default:
				}
			}
		},
		OnBestPath: func(paths []*apiutil.Path, _ time.Time) {
			for _, p := range paths {
				if p.PeerASN != 0 && !p.Withdrawal {
					fmt.Printf("%s %s from AS %d\n", speakerLearned, p.Nlri, p.PeerASN)
				}
			}
		},
	}, server.WatchPeer(), server.WatchBestPath(true)); err != nil {
		return fmt.Errorf("watch peers: %w", err)
	}
	for _, p := range cfg.Peers {
		mk := func(bfd bool) *api.Peer {
			peer := &api.Peer{
				Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
				Timers: &api.Timers{Config: &api.TimersConfig{
					ConnectRetry:           1,
					HoldTime:               uint64(p.HoldTime / time.Second),
					KeepaliveInterval:      uint64(p.KeepaliveTime / time.Second),
					IdleHoldTimeAfterReset: speakerIdleAfterReset,
				}},
			}
			if p.BFD != nil && bfd {
				peer.Bfd = &api.BfdPeerConfig{
					Enabled:                  true,
					DesiredMinimumTxInterval: uint32(p.BFD.MinTx / time.Microsecond),
					RequiredMinimumReceive:   uint32(p.BFD.MinRx / time.Microsecond),
					DetectionMultiplier:      uint32(p.BFD.Multiplier),
				}
			}
			return peer
		}
		if p.BFD != nil && p.BFDWhileEstablished {
			apiPeers[p.Address] = mk
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: mk(!p.BFDWhileEstablished)}); err != nil {
			return fmt.Errorf("add peer %s: %w", p.Address, err)
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-states:
				mk, ok := apiPeers[c.peer]
				if !ok {
					continue
				}
				if _, err := s.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: mk(c.established)}); err != nil {
					log.Warn("turning BFD on or off", "peer", c.peer, "bfd", c.established, "err", err)
				} else {
					log.Info("BFD follows the session", "peer", c.peer, "bfd", c.established)
				}
			}
		}
	}()
	var paths []*apiutil.Path
	for _, pfx := range cfg.Prefixes {
		nlri, err := bgp.NewIPAddrPrefix(pfx)
		if err != nil {
			return fmt.Errorf("prefix %s: %w", pfx, err)
		}
		family, nh := bgp.RF_IPv4_UC, cfg.NextHop4
		if pfx.Addr().Is6() {
			family, nh = bgp.RF_IPv6_UC, cfg.NextHop6
		}
		nhAttr, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return fmt.Errorf("next hop %s: %w", nh, err)
		}
		paths = append(paths, &apiutil.Path{
			Family: family,
			Nlri:   nlri,
			Attrs:  []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nhAttr},
		})
	}
	if len(paths) > 0 {
		if _, err := s.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
			return fmt.Errorf("add paths: %w", err)
		}
	}
	fmt.Println(speakerReady)
	<-ctx.Done()
	// What SPEC §7 asks of a daemon's graceful stop: withdraw first, then
	// go on with the rest of the stop (here a fixed drain that stands in
	// for hostlbd leaving the ring), then close the sessions and exit.
	log.Info("stopping: withdrawing every path")
	if len(paths) > 0 {
		if err := s.DeletePath(apiutil.DeletePathRequest{DeleteAll: true}); err != nil {
			return fmt.Errorf("withdraw: %w", err)
		}
	}
	time.Sleep(speakerDrain)
	log.Info("stopping: closing every session")
	if err := s.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
		return fmt.Errorf("stop BGP: %w", err)
	}
	return nil
}

// Speaker is a GoBGP speaker running on a node.
type Speaker struct {
	*Proc
	Node *Node
}

// StartSpeaker runs a GoBGP speaker with cfg in n's namespace, as a child
// of the test binary (TestMain must call RunSpeakerIfChild), and waits
// until it has configured its peers and paths.
func (n *Node) StartSpeaker(cfg SpeakerConfig) *Speaker {
	t := n.lab.T
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("bgplab: find the test binary: %v", err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(n.Dir, "gobgp.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, n.NS, n.Name+" gobgp", filepath.Join(n.Dir, "gobgp.log"),
		[]string{speakerEnv + "=@" + cfgPath}, self)
	if _, err := Eventually(10*time.Second, 10*time.Millisecond, func() error {
		if !p.Running() {
			return fmt.Errorf("exited: %w", errors.Join(p.err, ErrGiveUp))
		}
		if !strings.Contains(p.Log(), speakerReady) {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("bgplab: GoBGP speaker on %s: %v\n%s", n.Name, err, p.Log())
	}
	return &Speaker{Proc: p, Node: n}
}

// SpeakerFor is the speaker configuration of n towards the lab's router:
// an IPv4 and an IPv6 session, advertising prefixes.
func (n *Node) SpeakerFor(bfd *BFDTimers, password string, prefixes ...netip.Prefix) SpeakerConfig {
	cfg := SpeakerConfig{ASN: NodeASN, RouterID: n.Addr4, Prefixes: prefixes, NextHop4: n.Addr4, NextHop6: n.Addr6}
	for _, a := range []netip.Addr{RouterNodes4, RouterNodes6} {
		cfg.Peers = append(cfg.Peers, SpeakerPeer{
			Address: a, ASN: RouterASN, Password: password,
			HoldTime: 3 * time.Second, KeepaliveTime: time.Second, BFD: bfd,
		})
	}
	return cfg
}
