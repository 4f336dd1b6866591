package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"

	"github.com/hashicorp/memberlist"
)

// formatV1 is the first byte of every encoding in this file. Decoders reject
// other formats; fields added within format 1 go at the end, and decoders
// ignore trailing bytes, so an older node reads a newer node's meta.
const formatV1 = 1

// Message kinds after the format byte of a user message or push-pull state.
const (
	kindChunk  byte = 1 // one chunk of a node's announced set (broadcast)
	kindState  byte = 2 // every announced set this node knows (push-pull)
	kindDigest byte = 3 // a node's current generations (probe ack payload)
)

const flagLeaving = 1 << 0

// chunkBudget bounds one encoded chunk so that it fits a gossip packet
// (UDPBufferSize 1400 less encryption, label and compound overhead) with room
// to spare. memberlist never sends a broadcast larger than the packet.
const chunkBudget = 1000

// maxChunks bounds what a receiver will assemble for one node: 4096 chunks of
// ~190 IPv4 addresses is ~780,000 addresses.
const maxChunks = 4096

// Smallest encodings, which bound every count a decoder reads: a count of n
// items needs at least n times the item's minimum size in the bytes left,
// so that a decoder never allocates more than the message's size warrants.
const (
	minAddrSize  = 1 + 4     // length byte and an IPv4 address
	minLabelSize = 1 + 1     // two empty strings
	minSetSize   = 2 + 1 + 1 // a one-byte node name, a generation, a count
	minNameSize  = 1 + 1     // a one-byte VIP name (names are never empty)
)

// maxChunkAddrs is the most addresses a chunk can carry within chunkBudget
// (in each of its two address lists); maxChunkNames the most VIP names.
const (
	maxChunkAddrs = chunkBudget / minAddrSize
	maxChunkNames = chunkBudget / minNameSize
)

// maxNameLen bounds a VIP name in the exclusions: every name must fit one
// chunk. Config allows 63 bytes.
const maxNameLen = 255

// maxStateSets bounds the sets in one push-pull state: far more nodes than
// a ring of Kubernetes nodes (5,000 at most) holds.
const maxStateSets = 1 << 14

// Health is what a node says about its own fitness to announce IPs.
type Health uint8

const (
	// HealthOK means the node may announce IPs. The zero value.
	HealthOK Health = iota
	// HealthNotReady means the node runs but must not be given IPs yet (no
	// first reconcile, no Kubernetes sync, failed local checks).
	HealthNotReady
	// HealthDraining means the node is stopping; move its IPs away.
	HealthDraining
)

func (h Health) String() string {
	switch h {
	case HealthOK:
		return "ok"
	case HealthNotReady:
		return "not-ready"
	case HealthDraining:
		return "draining"
	}
	return fmt.Sprintf("health(%d)", uint8(h))
}

// Meta is a node's gossiped metadata: the compact summary that rides in
// memberlist's node meta (at most memberlist.MetaMaxSize = 512 bytes). The
// announced set itself travels separately (see doc.go).
type Meta struct {
	// Gen increases with every change of the node's metadata. It starts at
	// the node's wall clock in nanoseconds so that a restarted node's
	// generations stay above the ones its peers remember.
	Gen     uint64
	Version string
	Labels  map[string]string
	Health  Health
	// Leaving is set by a node that is leaving the ring gracefully, just
	// before it leaves: memberlist does not tell its event delegate whether
	// a node left or failed (Node.State is never set), this flag does.
	Leaving bool
	// AnnounceGen is the Gen at which the announced set last changed;
	// Member.AnnouncedGen equal to it means the receiver holds that set.
	AnnounceGen   uint64
	AnnounceCount int
	// HeartbeatPort is the UDP port of the node's heartbeat (package
	// heartbeat) on its gossip address's IP; 0 when it runs none (the lan
	// and wan profiles, or a build before the heartbeat). Fixed for the
	// ring's life.
	HeartbeatPort uint16
}

// CheckMeta returns the error New or SetLabels would return for metadata
// m: whether it fits memberlist's MetaMaxSize.
func CheckMeta(m Meta) error {
	_, err := encodeMeta(m)
	return err
}

// encodeMeta encodes m in format 1:
//
//	format(1) uvarint(Gen) health(1) flags(1) uvarint(AnnounceGen) uvarint(AnnounceCount)
//	string(Version) uvarint(len(Labels)) {string(key) string(value)} sorted by key
//	uvarint(0) uvarint(HeartbeatPort)
//
// where string is uvarint(len) followed by the bytes, and flags bit 0 is
// Leaving. The final zero is a retired field: earlier builds sent there the
// names of the VIPs failing their health check, which now travel with the
// announced set (exclusions, see doc.go). It stays, always an empty list,
// so that such a build reads "none" rather than a later field as names.
// HeartbeatPort was added after it within format 1: earlier builds ignore
// it as trailing bytes, and meta that ends before it reads as 0 (no
// heartbeat). Bytes after the last field are ignored, so later fields can
// follow the same way.
func encodeMeta(m Meta) ([]byte, error) {
	b := []byte{formatV1}
	b = binary.AppendUvarint(b, m.Gen)
	b = append(b, byte(m.Health))
	var flags byte
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, m.AnnounceGen)
	b = binary.AppendUvarint(b, uint64(m.AnnounceCount))
	b = appendString(b, m.Version)
	b = binary.AppendUvarint(b, uint64(len(m.Labels)))
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		b = appendString(b, k)
		b = appendString(b, m.Labels[k])
	}
	b = binary.AppendUvarint(b, 0) // retired: failing VIPs' names
	b = binary.AppendUvarint(b, uint64(m.HeartbeatPort))
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node metadata is %d bytes, memberlist allows %d: shorten the labels or the version", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes node metadata. It rejects more than memberlist's
// MetaMaxSize without decoding it: no node sends more (memberlist refuses),
// so a longer one is corrupt or forged.
func decodeMeta(b []byte) (Meta, error) {
	if len(b) > memberlist.MetaMaxSize {
		return Meta{}, fmt.Errorf("node metadata is %d bytes, memberlist allows %d: %w", len(b), memberlist.MetaMaxSize, errMetaTooLarge)
	}
	var m Meta
	d := decoder{b: b}
	if f := d.byte(); d.err == nil && f != formatV1 {
		return Meta{}, fmt.Errorf("node metadata format %d: this node reads only format %d", f, formatV1)
	}
	m.Gen = d.uvarint()
	m.Health = Health(d.byte())
	m.Leaving = d.byte()&flagLeaving != 0
	m.AnnounceGen = d.uvarint()
	m.AnnounceCount = d.count(1 << 30)
	m.Version = d.string()
	n := d.items(minLabelSize, memberlist.MetaMaxSize)
	if n > 0 {
		m.Labels = make(map[string]string, n)
	}
	for range n {
		k := d.string()
		m.Labels[k] = d.string()
	}
	// The retired list of failing VIPs (absent from the oldest nodes'
	// meta): skipped, so that fields added after it can be read.
	if d.err == nil && len(d.b) > 0 {
		for range d.items(1, memberlist.MetaMaxSize) {
			d.string()
		}
	}
	if d.err == nil && len(d.b) > 0 {
		if p := d.uvarint(); p <= math.MaxUint16 {
			m.HeartbeatPort = uint16(p)
		} else if d.err == nil {
			d.err = fmt.Errorf("heartbeat port %d is not a port", p)
		}
	}
	if d.err != nil {
		return Meta{}, fmt.Errorf("decode node metadata: %w", d.err)
	}
	return m, nil
}

// chunk is one piece of a node's set, small enough for a packet.
type chunk struct {
	node       string
	gen        uint64
	idx, total int
	addrs      []netip.Addr
	// The exclusions' share of this chunk (see announcedSet).
	cannot    []netip.Addr
	unhealthy []string
}

// encodeChunks splits a sorted announced set without exclusions into
// chunks (tests; the Ring sends encodeSet's).
func encodeChunks(node string, gen uint64, addrs []netip.Addr) [][]byte {
	return encodeSet(node, announcedSet{gen: gen, addrs: addrs})
}

// encodeSet splits a node's normalised set into broadcastable chunks:
//
//	format(1) kindChunk(1) string(node) uvarint(gen) uvarint(idx) uvarint(total)
//	uvarint(count) {addr}
//	[uvarint(count) {addr} uvarint(count) {string}]
//
// where addr is 4 followed by 4 bytes or 16 followed by 16 bytes. The
// bracketed part is the exclusions' share of the chunk (the addresses the
// node cannot announce, then the names of its failing VIPs), added within
// format 1: it is sent only when the set has exclusions, and a decoder that
// predates it ignores it as trailing bytes. The three lists are cut, in that
// order, into chunks of at most chunkBudget bytes. An empty set is one chunk
// with no addresses.
func encodeSet(node string, s announcedSet) [][]byte {
	ext := len(s.cannot) > 0 || len(s.unhealthy) > 0
	header := func(idx, total int) []byte {
		b := []byte{formatV1, kindChunk}
		b = appendString(b, node)
		b = binary.AppendUvarint(b, s.gen)
		b = binary.AppendUvarint(b, uint64(idx))
		return binary.AppendUvarint(b, uint64(total))
	}
	counts := 1
	if ext {
		counts = 3
	}
	// Split first, then encode: the header depends on the total.
	room := chunkBudget - len(header(maxChunks, maxChunks)) - counts*binary.MaxVarintLen32
	var parts []chunk
	var cur chunk
	size := 0
	fits := func(n int) {
		if size+n > room {
			parts = append(parts, cur)
			cur, size = chunk{}, 0
		}
		size += n
	}
	for _, a := range s.addrs {
		fits(addrSize(a))
		cur.addrs = append(cur.addrs, a)
	}
	for _, a := range s.cannot {
		fits(addrSize(a))
		cur.cannot = append(cur.cannot, a)
	}
	for _, n := range s.unhealthy {
		fits(stringSize(n))
		cur.unhealthy = append(cur.unhealthy, n)
	}
	parts = append(parts, cur)
	out := make([][]byte, len(parts))
	for i, p := range parts {
		b := header(i, len(parts))
		b = appendAddrs(b, p.addrs)
		if ext {
			b = appendAddrs(b, p.cannot)
			b = appendNames(b, p.unhealthy)
		}
		out[i] = b
	}
	return out
}

// decodeChunk decodes a message that starts after the format and kind bytes.
func decodeChunk(b []byte) (chunk, error) {
	d := decoder{b: b}
	c := chunk{node: d.string(), gen: d.uvarint()}
	c.idx = d.count(maxChunks)
	c.total = d.count(maxChunks)
	c.addrs = d.addrs(maxChunkAddrs)
	// The exclusions came later within format 1: absent means none.
	if d.err == nil && len(d.b) > 0 {
		c.cannot = d.addrs(maxChunkAddrs)
		c.unhealthy = d.names(maxChunkNames)
	}
	if d.err == nil && (c.total == 0 || c.idx >= c.total || c.node == "") {
		d.err = fmt.Errorf("chunk %d of %d for node %q", c.idx, c.total, c.node)
	}
	if d.err != nil {
		return chunk{}, fmt.Errorf("decode announced-set chunk: %w", d.err)
	}
	return c, nil
}

// announcedSet is one node's announced IPs at a generation, with its
// exclusions at the same generation: the addresses it cannot announce
// although placement would give them to it (no interface, no responder
// socket, local address or sysctls not in place), and the names of the VIPs
// whose health check fails on it (or has no result yet). Peers leave the
// node out of those addresses' and VIPs' placement. Every list is sorted
// and free of duplicates; a change of any of them is a new generation.
type announcedSet struct {
	gen       uint64
	addrs     []netip.Addr
	cannot    []netip.Addr
	unhealthy []string
}

// sameExclusions reports whether a and b exclude the same IPs and VIPs.
func sameExclusions(a, b announcedSet) bool {
	return slices.Equal(a.cannot, b.cannot) && slices.Equal(a.unhealthy, b.unhealthy)
}

// encodeState encodes every known set for push-pull:
//
//	format(1) kindState(1) uvarint(n) {string(node) uvarint(gen) uvarint(count) {addr}}
//	[{uvarint(count) {addr} uvarint(count) {string}} × n]
//
// The bracketed part is each set's exclusions, in the order of the sets,
// added within format 1: sent only when some set has exclusions, and
// ignored as trailing bytes by a decoder that predates it.
func encodeState(sets map[string]announcedSet) []byte {
	b := []byte{formatV1, kindState}
	b = binary.AppendUvarint(b, uint64(len(sets)))
	nodes := slices.Sorted(maps.Keys(sets))
	ext := false
	for _, node := range nodes {
		s := sets[node]
		b = appendString(b, node)
		b = binary.AppendUvarint(b, s.gen)
		b = appendAddrs(b, s.addrs)
		ext = ext || len(s.cannot) > 0 || len(s.unhealthy) > 0
	}
	if ext {
		for _, node := range nodes {
			b = appendAddrs(b, sets[node].cannot)
			b = appendNames(b, sets[node].unhealthy)
		}
	}
	return b
}

// decodeState decodes push-pull state, including its format and kind bytes.
func decodeState(b []byte) (map[string]announcedSet, error) {
	d := decoder{b: b}
	if f, k := d.byte(), d.byte(); d.err == nil && (f != formatV1 || k != kindState) {
		return nil, fmt.Errorf("decode gossip state: format %d kind %d: this node reads format %d kind %d", f, k, formatV1, kindState)
	}
	n := d.items(minSetSize, maxStateSets)
	// The hint is capped: a map's buckets cost more than the entries' bytes.
	sets := make(map[string]announcedSet, min(n, 64))
	order := make([]string, 0, n) // n is bounded by the bytes present
	for range n {
		node := d.string()
		if d.err == nil && node == "" {
			d.err = errors.New("set of a node with no name")
		}
		s := announcedSet{gen: d.uvarint(), addrs: d.addrs(maxChunks * maxChunkAddrs)}
		if d.err != nil {
			break
		}
		sets[node] = s
		order = append(order, node)
	}
	// The exclusions came later within format 1: absent means none. They
	// follow the sets' order, so a node listed twice takes its last.
	if d.err == nil && len(d.b) > 0 {
		for _, node := range order {
			s := sets[node]
			s.cannot = d.addrs(maxChunks * maxChunkAddrs)
			s.unhealthy = d.names(maxChunks * maxChunkNames)
			if d.err != nil {
				break
			}
			sets[node] = s
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode gossip state: %w", d.err)
	}
	for node, s := range sets {
		s.addrs = sortAddrs(s.addrs)
		s.cannot = sortAddrs(s.cannot)
		slices.Sort(s.unhealthy)
		s.unhealthy = slices.Compact(s.unhealthy)
		sets[node] = s
	}
	return sets, nil
}

// digest is what a node says about itself in every probe ack: the Gen of
// the meta it advertises and the AnnounceGen of its set. A prober holding
// older ones has missed a broadcast and pulls the node's state.
type digest struct {
	gen, announceGen uint64
}

// encodeDigest encodes d:
//
//	format(1) kindDigest(1) uvarint(gen) uvarint(announceGen)
func encodeDigest(d digest) []byte {
	b := []byte{formatV1, kindDigest}
	b = binary.AppendUvarint(b, d.gen)
	return binary.AppendUvarint(b, d.announceGen)
}

// decodeDigest decodes an ack payload, including its format and kind
// bytes. Trailing bytes are ignored (fields added within format 1).
func decodeDigest(b []byte) (digest, error) {
	d := decoder{b: b}
	if f, k := d.byte(), d.byte(); d.err == nil && (f != formatV1 || k != kindDigest) {
		return digest{}, fmt.Errorf("decode probe digest: format %d kind %d: this node reads format %d kind %d", f, k, formatV1, kindDigest)
	}
	g := digest{gen: d.uvarint(), announceGen: d.uvarint()}
	if d.err != nil {
		return digest{}, fmt.Errorf("decode probe digest: %w", d.err)
	}
	return g, nil
}

// normalizeAddrs returns a sorted, de-duplicated copy of addrs with invalid
// addresses dropped, IPv4-mapped IPv6 unmapped and zones removed.
func normalizeAddrs(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// normalizeNames returns a sorted, de-duplicated copy of names without the
// empty ones and those longer than maxNameLen (dropped: their number).
func normalizeNames(names []string) (out []string, dropped int) {
	out = make([]string, 0, len(names))
	for _, n := range names {
		if n == "" || len(n) > maxNameLen {
			dropped++
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), dropped
}

// sortAddrs sorts and de-duplicates decoded addresses in place.
func sortAddrs(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

func addrSize(a netip.Addr) int { return 1 + a.BitLen()/8 }

func stringSize(s string) int { return uvarintSize(uint64(len(s))) + len(s) }

func uvarintSize(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// appendAddrs appends uvarint(count) {addr}.
func appendAddrs(b []byte, addrs []netip.Addr) []byte {
	b = binary.AppendUvarint(b, uint64(len(addrs)))
	for _, a := range addrs {
		b = appendAddr(b, a)
	}
	return b
}

// appendNames appends uvarint(count) {string}.
func appendNames(b []byte, names []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = appendString(b, n)
	}
	return b
}

func appendAddr(b []byte, a netip.Addr) []byte {
	s := a.AsSlice()
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var (
	errShort        = errors.New("message too short")
	errMetaTooLarge = errors.New("metadata too large")
)

// decoder reads the encodings above; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length and checks it against limit, so that a corrupt
// message cannot make the decoder allocate without bound.
func (d *decoder) count(limit int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(limit) {
		d.err = fmt.Errorf("count %d exceeds %d", v, limit)
		return 0
	}
	return int(v)
}

// items reads a count of items of at least minSize bytes each and checks
// it against limit and against the bytes left, before anything is
// allocated for them.
func (d *decoder) items(minSize, limit int) int {
	v := d.uvarint()
	if d.err == nil && (v > uint64(limit) || v > uint64(len(d.b)/minSize)) {
		d.err = fmt.Errorf("count %d exceeds %d or what %d bytes can hold", v, limit, len(d.b))
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)) {
		d.err = errShort
	}
	if d.err != nil {
		return ""
	}
	n := int(v)
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// addrs reads uvarint(count) {addr}, at most limit addresses.
func (d *decoder) addrs(limit int) []netip.Addr {
	n := d.items(minAddrSize, limit)
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, n)
	for range n {
		out = append(out, d.addr())
	}
	return out
}

// names reads uvarint(count) {string}, at most limit VIP names, each
// neither empty nor longer than maxNameLen.
func (d *decoder) names(limit int) []string {
	n := d.items(minNameSize, limit)
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		s := d.string()
		if d.err == nil && (s == "" || len(s) > maxNameLen) {
			d.err = fmt.Errorf("VIP name of %d bytes", len(s))
		}
		if d.err != nil {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (d *decoder) addr() netip.Addr {
	n := int(d.byte())
	if d.err != nil {
		return netip.Addr{}
	}
	if (n != 4 && n != 16) || len(d.b) < n {
		d.err = fmt.Errorf("bad address length %d", n)
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(d.b[:n])
	d.b = d.b[n:]
	return a
}
