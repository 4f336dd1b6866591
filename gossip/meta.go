package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
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
)

// maxChunkAddrs is the most addresses a chunk can carry within chunkBudget.
const maxChunkAddrs = chunkBudget / minAddrSize

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
	// Unhealthy names the VIPs whose health check fails (or has no result
	// yet) on this node, sorted: peers leave the node out of those VIPs'
	// placement. Added within format 1 after the labels; a node that does
	// not send it is healthy for every VIP.
	Unhealthy []string
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
//	uvarint(len(Unhealthy)) {string(name)}
//
// where string is uvarint(len) followed by the bytes, and flags bit 0 is
// Leaving.
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
	b = binary.AppendUvarint(b, uint64(len(m.Unhealthy)))
	for _, n := range m.Unhealthy {
		b = appendString(b, n)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node metadata is %d bytes, memberlist allows %d: shorten the labels, the version or the names of VIPs failing their health check", len(b), memberlist.MetaMaxSize)
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
	// Unhealthy came later within format 1: absent from older nodes' meta.
	if d.err == nil && len(d.b) > 0 {
		if n := d.items(1, memberlist.MetaMaxSize); n > 0 {
			m.Unhealthy = make([]string, 0, n)
			for range n {
				m.Unhealthy = append(m.Unhealthy, d.string())
			}
		}
	}
	if d.err != nil {
		return Meta{}, fmt.Errorf("decode node metadata: %w", d.err)
	}
	return m, nil
}

// chunk is one piece of a node's announced set, small enough for a packet.
type chunk struct {
	node       string
	gen        uint64
	idx, total int
	addrs      []netip.Addr
}

// encodeChunks splits a sorted announced set into broadcastable chunks:
//
//	format(1) kindChunk(1) string(node) uvarint(gen) uvarint(idx) uvarint(total)
//	uvarint(count) {addr}
//
// where addr is 4 followed by 4 bytes or 16 followed by 16 bytes. An empty
// set is one chunk with no addresses.
func encodeChunks(node string, gen uint64, addrs []netip.Addr) [][]byte {
	header := func(idx, total int) []byte {
		b := []byte{formatV1, kindChunk}
		b = appendString(b, node)
		b = binary.AppendUvarint(b, gen)
		b = binary.AppendUvarint(b, uint64(idx))
		return binary.AppendUvarint(b, uint64(total))
	}
	// Split first, then encode: the header depends on the total.
	var groups [][]netip.Addr
	room := chunkBudget - len(header(maxChunks, maxChunks)) - binary.MaxVarintLen32
	start, size := 0, 0
	for i, a := range addrs {
		if s := addrSize(a); size+s > room {
			groups = append(groups, addrs[start:i])
			start, size = i, 0
		}
		size += addrSize(a)
	}
	groups = append(groups, addrs[start:])
	out := make([][]byte, len(groups))
	for i, g := range groups {
		b := header(i, len(groups))
		b = binary.AppendUvarint(b, uint64(len(g)))
		for _, a := range g {
			b = appendAddr(b, a)
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
	n := d.items(minAddrSize, maxChunkAddrs)
	c.addrs = make([]netip.Addr, 0, n)
	for range n {
		c.addrs = append(c.addrs, d.addr())
	}
	if d.err == nil && (c.total == 0 || c.idx >= c.total || c.node == "") {
		d.err = fmt.Errorf("chunk %d of %d for node %q", c.idx, c.total, c.node)
	}
	if d.err != nil {
		return chunk{}, fmt.Errorf("decode announced-set chunk: %w", d.err)
	}
	return c, nil
}

// announcedSet is one node's announced IPs at a generation.
type announcedSet struct {
	gen   uint64
	addrs []netip.Addr
}

// encodeState encodes every known announced set for push-pull:
//
//	format(1) kindState(1) uvarint(n) {string(node) uvarint(gen) uvarint(count) {addr}}
func encodeState(sets map[string]announcedSet) []byte {
	b := []byte{formatV1, kindState}
	b = binary.AppendUvarint(b, uint64(len(sets)))
	for _, node := range slices.Sorted(maps.Keys(sets)) {
		s := sets[node]
		b = appendString(b, node)
		b = binary.AppendUvarint(b, s.gen)
		b = binary.AppendUvarint(b, uint64(len(s.addrs)))
		for _, a := range s.addrs {
			b = appendAddr(b, a)
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
	for range n {
		node := d.string()
		if d.err == nil && node == "" {
			d.err = errors.New("set of a node with no name")
		}
		s := announcedSet{gen: d.uvarint()}
		c := d.items(minAddrSize, maxChunks*maxChunkAddrs)
		s.addrs = make([]netip.Addr, 0, c)
		for range c {
			s.addrs = append(s.addrs, d.addr())
		}
		if d.err != nil {
			break
		}
		slices.SortFunc(s.addrs, netip.Addr.Compare)
		s.addrs = slices.Compact(s.addrs)
		sets[node] = s
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode gossip state: %w", d.err)
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

func addrSize(a netip.Addr) int { return 1 + a.BitLen()/8 }

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
