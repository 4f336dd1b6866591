package api

import (
	"net/netip"
	"time"
)

// Version is the schema version this package speaks: the "version" field
// of every response, and the "/v1" of every path. A change that removes or
// renames a field, or changes its meaning, gets a new version; fields may
// be added within a version, so clients ignore fields they do not know.
const Version = 1

// The endpoints. Every path is under /v1; GET reads, POST acts.
const (
	PathStatus      = "/v1/status"       // GET: Status
	PathMembers     = "/v1/members"      // GET: Members
	PathVIPs        = "/v1/vips"         // GET: VIPs; GET /v1/vips/{ip}: WhoOwns
	PathBGP         = "/v1/bgp"          // GET: BGP
	PathConflicts   = "/v1/conflicts"    // GET: Conflicts
	PathReload      = "/v1/reload"       // POST, no body: Reload
	PathConfigCheck = "/v1/config/check" // POST, no body: ConfigCheck
)

// DefaultSocket is where the packaged daemon listens ([control] socket's
// default).
const DefaultSocket = "/run/hostlb/hostlb.sock"

// AdminGroup is the group whose members may use the control socket (SPEC
// §8): the socket is mode 0660 in this group. It grants no access to the
// daemon's secrets, which belong to group hostlb.
const AdminGroup = "hostlb-admin"

// Header starts every response, errors included.
type Header struct {
	// Version is the schema version, Version.
	Version int `json:"version"`
	// Node is the answering daemon's [node] name.
	Node string `json:"node"`
	// Time is the daemon's clock when it answered: every other time in
	// the response is the daemon's too, so "how long ago" is Time minus
	// it, whatever the client's clock says.
	Time time.Time `json:"time"`
}

// Error is the body of every response whose HTTP status is not 2xx.
type Error struct {
	Header
	// Error says what went wrong, in words for an operator.
	Error string `json:"error"`
}

// Status is GET /v1/status: the daemon at a glance.
type Status struct {
	Header
	// Daemon is hostlbd's build.
	Daemon Build `json:"daemon"`
	// Started is when the daemon started.
	Started time.Time `json:"started"`
	// Ready: the first full reconcile pass ran (READY=1 was sent).
	Ready bool `json:"ready"`
	// Joined: the node has settled into the gossip ring (true without a
	// ring).
	Joined bool `json:"joined"`
	// Draining: the daemon is stopping and hands its IPs over.
	Draining bool `json:"draining"`
	// Refused says why the gossip ring refuses this node; "" if it does
	// not.
	Refused string `json:"refused"`
	// LastPass is when the last reconcile pass ended; null before the
	// first. PassError is that pass's error, "" if it succeeded.
	LastPass  *time.Time     `json:"last_pass"`
	PassError string         `json:"pass_error"`
	Reloads   Reloads        `json:"reloads"`
	Members   Counts         `json:"members"`
	IPs       IPCounts       `json:"ips"`
	Conflicts ConflictCounts `json:"conflicts"`
	// BGP is null when the node has no BGP speaker.
	BGP *BGPCounts `json:"bgp"`
}

// Build identifies a binary.
type Build struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// Reloads counts configuration reloads (SIGHUP or POST /v1/reload) since
// the start.
type Reloads struct {
	Count    uint64 `json:"count"`
	Failures uint64 `json:"failures"`
	// Last is when the last one ran (null if none); LastError is its
	// error, "" after a success.
	Last      *time.Time `json:"last"`
	LastError string     `json:"last_error"`
}

// Counts counts the ring's members by state. Ring is false for a node
// without a gossip ring.
type Counts struct {
	Ring  bool `json:"ring"`
	Total int  `json:"total"`
	Alive int  `json:"alive"`
	Dead  int  `json:"dead"`
	Left  int  `json:"left"`
}

// IPCounts counts the IPs the cluster serves, as this node sees them.
type IPCounts struct {
	Total int `json:"total"`
	// Here: announced by this node.
	Here int `json:"here"`
	L2   int `json:"l2"`
	BGP  int `json:"bgp"`
	// Cannot: IPs this node should announce and cannot (no interface,
	// socket, address or sysctl): the next node has them.
	Cannot int `json:"cannot"`
}

// ConflictCounts counts conflicts now.
type ConflictCounts struct {
	// Wire counts the conflicts on the wire (another MAC answers for an
	// IP this node announces); Disagreements the IPs the ring gives two
	// announcers, or none.
	Wire          int `json:"wire"`
	Disagreements int `json:"disagreements"`
}

// BGPCounts sums up the BGP speaker.
type BGPCounts struct {
	Peers       int `json:"peers"`
	Established int `json:"established"`
	Advertised  int `json:"advertised"`
	Imported    int `json:"imported"`
}

// Members is GET /v1/members.
type Members struct {
	Header
	// Ring is false for a node without a gossip ring; Members is then
	// empty.
	Ring    bool     `json:"ring"`
	Members []Member `json:"members"`
}

// Member is one member of the ring, as this node sees it.
type Member struct {
	Name string `json:"name"`
	// Address is the member's gossip address (host:port).
	Address netip.AddrPort `json:"address"`
	// State is alive (suspected members included: the ring keeps a
	// suspect until it is declared dead), dead or left; Since is when
	// this node saw it change (null if unknown).
	State string     `json:"state"`
	Since *time.Time `json:"since"`
	// Health is what the member gossips: ok, not-ready or draining.
	Health  string `json:"health"`
	Leaving bool   `json:"leaving"`
	// Self marks the answering node.
	Self   bool              `json:"self"`
	Labels map[string]string `json:"labels"`
	// Announced are the L2 IPs the member says it answers for; Cannot
	// those it says it cannot announce; Unhealthy the VIP names whose
	// health check fails there.
	Announced []netip.Addr `json:"announced"`
	Cannot    []netip.Addr `json:"cannot"`
	Unhealthy []string     `json:"unhealthy"`
}

// VIPs is GET /v1/vips: every IP the cluster serves, by address.
type VIPs struct {
	Header
	VIPs []VIP `json:"vips"`
}

// WhoOwns is GET /v1/vips/{ip}.
type WhoOwns struct {
	Header
	VIP VIP `json:"vip"`
}

// VIP is one IP the cluster serves, as this node sees it.
type VIP struct {
	Address netip.Addr `json:"address"`
	// Name is the static VIP's name, or namespace/name of a Service.
	Name string `json:"name"`
	// Source is static or kubernetes; Mode l2 or bgp.
	Source string `json:"source"`
	Mode   string `json:"mode"`
	// Owners are the nodes placement chose to announce it (one in L2,
	// every eligible node in BGP). Announcers are the nodes whose
	// gossiped announced set holds it (L2): they differ while a handover
	// is in flight, and in a conflict.
	Owners     []string `json:"owners"`
	Announcers []string `json:"announcers"`
	// Preferred is the L2 node that announces it whenever it can; "" in
	// BGP mode.
	Preferred string `json:"preferred"`
	// Since is when this node saw Owners become what they are (null if
	// unknown); PreviousOwners what they were before (empty for an IP
	// never moved).
	Since          *time.Time `json:"since"`
	PreviousOwners []string   `json:"previous_owners"`
	// Here: the answering node announces it. Interfaces are the links it
	// answers ARP/NDP on (L2), Peers the BGP sessions it is advertised
	// on (BGP: every established peer of the answering node); both are
	// empty on other nodes. Local: it is held on hostlb0 here.
	Here       bool         `json:"here"`
	Interfaces []string     `json:"interfaces"`
	Peers      []netip.Addr `json:"peers"`
	Local      bool         `json:"local"`
	// Disagreement is set when the ring gives this L2 IP two or more
	// announcers, or none while it has an owner, past the grace time.
	Disagreement *time.Time `json:"disagreement_since"`
	// NotHere says, for every other member, why it does not announce the
	// IP.
	NotHere []NodeReason `json:"not_here"`
}

// NodeReason is why a node does not announce an IP: "dead", "not
// eligible: labels do not match the node_selector {rack=r0}", "health
// check failing", "cannot announce: …", "standby: …", ...
type NodeReason struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// BGP is GET /v1/bgp.
type BGP struct {
	Header
	// Enabled is false when the node has no BGP speaker ([bgp] sets no
	// asn and no peer); the rest is then empty.
	Enabled bool `json:"enabled"`
	// Advertised counts the prefixes the node advertises (to every
	// established peer); Imported the routes [bgp.import] holds in the
	// kernel.
	Advertised int       `json:"advertised"`
	Imported   int       `json:"imported"`
	Peers      []BGPPeer `json:"peers"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the RFC 4271 FSM state: idle, connect, active, opensent,
	// openconfirm or established; Since when it entered it.
	State string     `json:"state"`
	Since *time.Time `json:"since"`
	// EstablishedCount counts how often the session came up.
	EstablishedCount int `json:"established_count"`
	// LastDown says why the session last went down ("" if never).
	LastDown string `json:"last_down"`
	// BFD is up, down, init or admin-down; "" when BFD is off. BFDDowns
	// counts how often BFD went down from up (a flapping link).
	BFD      string `json:"bfd"`
	BFDDowns int    `json:"bfd_downs"`
	// Advertised counts the prefixes sent to the peer (every prefix the
	// node advertises, while established); Received those in its
	// Adj-RIB-In, Accepted those the import policy took ([bgp.import]).
	Advertised int    `json:"advertised"`
	Received   uint64 `json:"received"`
	Accepted   uint64 `json:"accepted"`
}

// Conflicts is GET /v1/conflicts: two owners on the wire, and the ring's
// disagreements.
type Conflicts struct {
	Header
	// Wire are the conflicts now: another MAC answers on an interface
	// for an IP this node announces.
	Wire []WireConflict `json:"wire"`
	// Events are the last conflict events (at most 64), oldest first;
	// Counts counts every event since the start by action.
	Events []WireEvent       `json:"events"`
	Counts map[string]uint64 `json:"counts"`
	// Disagreements are the L2 IPs the ring's announced sets give two or
	// more announcers, or none, past the grace time.
	Disagreements []Disagreement `json:"disagreements"`
}

// WireConflict is another MAC answering for one of this node's IPs.
type WireConflict struct {
	Interface string     `json:"interface"`
	Address   netip.Addr `json:"address"`
	TheirMAC  string     `json:"their_mac"`
	// Node is the other hostlb node's name; "" for a host that is not
	// hostlb (reported, never fought).
	Node string `json:"node"`
	// Yielded: this node stopped answering and left the IP to the other.
	Yielded bool       `json:"yielded"`
	Since   *time.Time `json:"since"`
}

// WireEvent is one conflict event. Action is defending, yielding,
// peer-yielded, foreign, resumed or ended.
type WireEvent struct {
	Time      time.Time  `json:"time"`
	Action    string     `json:"action"`
	Interface string     `json:"interface"`
	Address   netip.Addr `json:"address"`
	VIP       string     `json:"vip"`
	OurMAC    string     `json:"our_mac"`
	TheirMAC  string     `json:"their_mac"`
	Node      string     `json:"node"`
}

// Disagreement is an L2 IP with two or more announcers, or none.
type Disagreement struct {
	Address    netip.Addr `json:"address"`
	Name       string     `json:"name"`
	Announcers []string   `json:"announcers"`
	Since      *time.Time `json:"since"`
}

// Reload is POST /v1/reload's answer when the daemon took the file: the
// keys that changed live and those that need a restart. A refused file is
// an Error (HTTP 422) that lists every problem; the daemon keeps running
// the previous configuration.
type Reload struct {
	Header
	Changed      []string `json:"changed"`
	NeedsRestart []string `json:"needs_restart"`
}

// ConfigCheck is POST /v1/config/check's answer: the daemon read its own
// configuration file as a reload would, and applied nothing. Valid says
// whether a reload would take it; Errors lists every problem (file:line:
// key: message) when it would not; Changed and NeedsRestart what a reload
// would change.
type ConfigCheck struct {
	Header
	Valid        bool     `json:"valid"`
	Errors       []string `json:"errors"`
	Changed      []string `json:"changed"`
	NeedsRestart []string `json:"needs_restart"`
}
