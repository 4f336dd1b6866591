package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/netif"
)

// DefaultPath is where the packaged daemon looks for its configuration.
const DefaultPath = "/etc/hostlb/hostlb.toml"

// Values of the string enums. They are kept as strings (not Go enums) so that
// they read the same in the TOML file, in logs and in hostlbctl output.
const (
	ModeL2  = "l2"
	ModeBGP = "bgp"

	FormatAuto    = "auto"
	FormatJournal = "journal"
	FormatJSON    = "json"
	FormatText    = "text"

	ProfileFast = "fast"
	ProfileLAN  = "lan"
	ProfileWAN  = "wan"
)

// Config is one fully decoded, validated and normalised hostlb.toml.
// Every field holds its default when the file does not set it.
type Config struct {
	Node       Node
	Log        Log
	Gossip     Gossip
	L2         L2
	BGP        BGP
	Kubernetes Kubernetes
	Metrics    Metrics
	Control    Control
	VIPs       []VIP
}

// Node is [node].
type Node struct {
	// Name defaults to the lower-cased host name; in Kubernetes mode it must
	// equal the Node object's name.
	Name string
	// Labels are gossiped and matched by static VIPs' node_selector.
	Labels map[string]string
}

// Log is [log].
type Log struct {
	Level  slog.Level
	Format string // FormatAuto, FormatJournal, FormatJSON or FormatText
}

// Gossip is [gossip].
type Gossip struct {
	Bind netip.AddrPort
	// Advertise is the zero AddrPort when unset: the gossip package then
	// picks the bind address or the node's first global IPv4. "ip" in the
	// file (no port) is normalised to ip:<bind port>.
	Advertise netip.AddrPort
	// Join are "host:port" seeds; a bare host in the file gets the bind port.
	Join []string
	// SecretKeyFile is the key file path, made absolute against the config
	// file's directory when it was relative.
	SecretKeyFile string
	// SecretKeys are the 32-byte AES-256 keys read from SecretKeyFile, in
	// file order: the first encrypts, all decrypt (rolling rotation). Nil
	// when InsecurePlaintext is set.
	SecretKeys        [][]byte
	InsecurePlaintext bool
	Profile           string // ProfileFast, ProfileLAN or ProfileWAN
	// Cluster names the ring: it is memberlist's label, so nodes whose
	// cluster differs never talk, even when they share a key. "" = no
	// label (the default, and what hostlb before it spoke).
	Cluster string
}

// L2 is [l2].
type L2 struct {
	// Interfaces as written: names or "/regex/" (netif.ParsePattern).
	// Empty means every up, broadcast, non-enslaved interface.
	Interfaces []string
	// Exclude as written: regular expressions, bare or "/regex/"
	// (netif.ParseExclude). The L2 output compiles both lists with
	// netif.NewSelector, the one implementation of interface selection;
	// decoding only checks them with the same parser.
	Exclude            []string
	GratuitousCount    int
	GratuitousInterval time.Duration
	// RefreshInterval is the period of GARP/NA while owner; 0 = off.
	RefreshInterval time.Duration
}

// BGP is [bgp].
type BGP struct {
	// ASN is the local AS number; 0 = unset, which is only valid without peers.
	ASN uint32
	// RouterID is IPv4 when set; the zero Addr means "the node's first
	// global IPv4".
	RouterID netip.Addr
	// ListenPort 0 means outgoing sessions only.
	ListenPort uint16
	Peers      []BGPPeer
	Import     BGPImport
}

// BGPPeer is one [[bgp.peer]].
type BGPPeer struct {
	Address       netip.Addr
	ASN           uint32
	Port          uint16     // default 179
	SourceAddress netip.Addr // zero = kernel's choice
	// HoldTime and KeepaliveTime are whole seconds (BGP carries seconds);
	// HoldTime is 0 (no keepalives) or at least 3 × KeepaliveTime.
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	EBGPMultihop  uint8 // TTL; 0 = directly connected
	// PasswordFile is absolute when it was relative in the file; Password is
	// its content without the trailing newline, read at load.
	PasswordFile    string
	Password        string
	GracefulRestart bool
	BFD             BFD
}

// BFD is a peer's bfd = { ... } (RFC 5880).
type BFD struct {
	Enabled    bool
	MinRx      time.Duration // default 300ms
	MinTx      time.Duration // default 300ms
	Multiplier uint8         // default 3, 1..255
}

// BGPImport is [bgp.import]: routes learned from peers go into a kernel table.
type BGPImport struct {
	Enabled bool
	Table   int // default 254 (main)
	Metric  int // default 20
}

// Kubernetes is [kubernetes].
type Kubernetes struct {
	Enabled bool
	// Kubeconfig "" means in-cluster configuration; a relative path is made
	// absolute against the config file's directory.
	Kubeconfig string
	// KubeconfigData is the file's content, read while validating.
	KubeconfigData    []byte
	LeaseNamespace    string
	LoadBalancerClass string
}

// Metrics is [metrics].
type Metrics struct {
	Listen string // host:port; "" disables the HTTP endpoint
}

// Control is [control].
type Control struct {
	Socket string // absolute path of the control socket
}

// VIP is one static [[vip]].
type VIP struct {
	Name      string
	Mode      string // ModeL2 or ModeBGP; default ModeL2
	Addresses []netip.Addr
	// NodeSelector matches gossiped node labels; empty = every member.
	NodeSelector map[string]string
	// Interfaces (L2 only) as written; empty = [l2] rules apply.
	Interfaces []string
	// Local makes the owner add the addresses to the hostlb0 dummy link so
	// the host accepts their traffic. Default true: a static VIP has no
	// kube-proxy behind it.
	Local  bool
	Health *Health // nil = always healthy
}

// Health is a VIP's health = { ... }: the VIP is announced only while a TCP
// connect to TCP succeeds.
type Health struct {
	TCP      string // host:port
	Interval time.Duration
	Timeout  time.Duration // < Interval
}

// Default returns a Config holding every default of SPEC §4, with Node.Name
// set from the host name.
func Default() *Config {
	name, _ := os.Hostname()
	return defaults(strings.ToLower(name))
}

func defaults(nodeName string) *Config {
	return &Config{
		Node: Node{Name: nodeName, Labels: map[string]string{}},
		Log:  Log{Level: slog.LevelInfo, Format: FormatAuto},
		Gossip: Gossip{
			Bind:          netip.AddrPortFrom(netip.IPv4Unspecified(), 7947),
			Join:          []string{},
			SecretKeyFile: "/etc/hostlb/gossip.key",
			Profile:       ProfileFast,
		},
		L2: L2{
			Interfaces:         []string{},
			Exclude:            slices.Clone(netif.DefaultExclude),
			GratuitousCount:    5,
			GratuitousInterval: 1100 * time.Millisecond,
		},
		BGP: BGP{
			Peers:  []BGPPeer{},
			Import: BGPImport{Table: 254, Metric: 20},
		},
		Kubernetes: Kubernetes{
			Enabled:        true,
			Kubeconfig:     "/etc/hostlb/kubeconfig",
			LeaseNamespace: "kube-system",
		},
		Metrics: Metrics{Listen: "127.0.0.1:9476"},
		Control: Control{Socket: "/run/hostlb/hostlb.sock"},
		VIPs:    []VIP{},
	}
}

func defaultPeer() BGPPeer {
	return BGPPeer{
		Port:          179,
		HoldTime:      9 * time.Second,
		KeepaliveTime: 3 * time.Second,
		BFD: BFD{
			MinRx:      300 * time.Millisecond,
			MinTx:      300 * time.Millisecond,
			Multiplier: 3,
		},
	}
}

func defaultVIP() VIP {
	return VIP{Mode: ModeL2, Local: true, NodeSelector: map[string]string{}, Interfaces: []string{}}
}

func defaultHealth() *Health {
	return &Health{Interval: time.Second, Timeout: 500 * time.Millisecond}
}

// Options changes where Parse gets what lies outside the config file. The
// zero value is what Load and Parse use.
type Options struct {
	// ReadFile reads the files the config points at (the gossip key file,
	// the kubeconfig, BGP password files), which are secrets; limit is the
	// most bytes the caller takes, and a larger file is an error. nil =
	// ReadSecret, which also refuses anything but a regular file that only
	// root or the daemon's user can change and others cannot read.
	ReadFile func(name string, limit int64) ([]byte, error)
	// Hostname gives the default node.name; nil = os.Hostname.
	Hostname func() (string, error)
}

// Load reads the file at path and parses it. The error, if any, is an
// [Errors].
func Load(path string) (*Config, error) {
	return Options{}.Load(path)
}

// Parse decodes and validates data, which was read from filename (used in
// error messages and to resolve relative key and password paths). The error,
// if any, is an [Errors] listing every problem found, sorted by line.
func Parse(filename string, data []byte) (*Config, error) {
	return Options{}.Parse(filename, data)
}

// Load is [Load] with o's sources.
func (o Options) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		msg := err.Error()
		if errors.As(err, &pe) {
			msg = "cannot read: " + pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: msg, err: err}}
	}
	return o.Parse(path, data)
}

// Parse is [Parse] with o's sources.
func (o Options) Parse(filename string, data []byte) (*Config, error) {
	if o.ReadFile == nil {
		o.ReadFile = ReadSecret
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	root, serr := parseTree(filename, data)
	if serr != nil {
		return nil, Errors{serr}
	}
	host, herr := o.Hostname()
	d := newDecoder(filename, o)
	cfg := defaults(strings.ToLower(host))
	if herr != nil {
		cfg.Node.Name = ""
	}
	d.decode(root, cfg)
	d.validate(cfg)
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return cfg, nil
}
