package gossip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// idleRing returns a Ring that is never Run: its delegates are called
// directly, as memberlist would. Its drop log is closed at cleanup.
func idleRing(t testing.TB, name string, logger *slog.Logger) *Ring {
	t.Helper()
	r, err := New(Config{NodeName: name, InsecurePlaintext: true, Bind: memAddr(1), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.drops.close)
	return r
}

// peerNode is a memberlist node for name carrying meta m.
func peerNode(t testing.TB, name string, m Meta) *memberlist.Node {
	t.Helper()
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	a := memAddr(2)
	return &memberlist.Node{Name: name, Addr: net.IP(a.Addr().AsSlice()), Port: a.Port(), Meta: b}
}

// rawChunk encodes chunk idx of total of node's set at gen.
func rawChunk(node string, gen uint64, idx, total int, set []netip.Addr) []byte {
	b := []byte{formatV1, kindChunk}
	b = appendString(b, node)
	b = binary.AppendUvarint(b, gen)
	b = binary.AppendUvarint(b, uint64(idx))
	b = binary.AppendUvarint(b, uint64(total))
	b = binary.AppendUvarint(b, uint64(len(set)))
	for _, a := range set {
		b = appendAddr(b, a)
	}
	return b
}

// rawSetChunk encodes chunk idx of total of node's set, exclusions
// included, with every list in chunk idx.
func rawSetChunk(node string, idx, total int, set announcedSet) []byte {
	b := rawChunk(node, set.gen, idx, total, set.addrs)
	if len(set.cannot)+len(set.unhealthy) > 0 {
		b = appendAddrs(b, set.cannot)
		b = appendNames(b, set.unhealthy)
	}
	return b
}

// manyNames returns n sorted VIP names.
func manyNames(n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, fmt.Sprintf("vip-%05d", i))
	}
	return out
}

// held returns what r holds of node's set.
func held(r *Ring, node string) announcedSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.members[node]; e != nil {
		return announcedSet{gen: e.set.gen, addrs: slices.Clone(e.set.addrs)}
	}
	return announcedSet{}
}

func (s announcedSet) String() string { return fmt.Sprintf("gen %d %v", s.gen, s.addrs) }

// A peer holding the key cannot freeze another member's set with an absurd
// generation: a chunk or state beyond genAhead of the member's own meta is
// dropped, and the member's next real set is taken.
func TestForgedGenerationCannotFreezeAMember(t *testing.T) {
	r := idleRing(t, "n1", nil)
	d := (*delegate)(r)
	g := uint64(time.Now().UnixNano())
	(*events)(r).NotifyJoin(peerNode(t, "n2", Meta{Gen: g, AnnounceGen: g}))
	d.NotifyMsg(rawChunk("n2", g, 0, 1, addrs("192.0.2.1")))
	if got := held(r, "n2"); got.gen != g {
		t.Fatalf("n2's own set not taken: %v", got)
	}

	for _, forged := range []uint64{math.MaxUint64, math.MaxUint64 - 1, g + genAhead + 1} {
		d.NotifyMsg(rawChunk("n2", forged, 0, 1, addrs("203.0.113.66")))
		d.MergeRemoteState(encodeState(map[string]announcedSet{"n2": {gen: forged, addrs: addrs("203.0.113.66")}}), false)
		if got := held(r, "n2"); got.gen != g || !slices.Equal(got.addrs, addrs("192.0.2.1")) {
			t.Fatalf("forged generation %d taken: n2's set is %v", forged, got)
		}
	}
	if got := r.InputErrors()[InputGeneration]; got != 6 {
		t.Errorf("InputErrors[generation] = %d, want 6 (3 chunks, 3 states)", got)
	}
	if r.queue.Len() != 1 {
		t.Errorf("%d chunks queued, want only n2's real one relayed", r.queue.Len())
	}

	// n2's next change is taken, by chunk and by state.
	d.NotifyMsg(rawChunk("n2", g+1, 0, 1, addrs("192.0.2.2")))
	if got := held(r, "n2"); got.gen != g+1 || !slices.Equal(got.addrs, addrs("192.0.2.2")) {
		t.Errorf("n2's next set not taken: %v", got)
	}
	d.MergeRemoteState(encodeState(map[string]announcedSet{"n2": {gen: g + 2, addrs: addrs("192.0.2.3")}}), false)
	if got := held(r, "n2"); got.gen != g+2 {
		t.Errorf("n2's set from push-pull not taken: %v", got)
	}
	// An older set never replaces a newer one.
	d.MergeRemoteState(encodeState(map[string]announcedSet{"n2": {gen: g + 1, addrs: addrs("192.0.2.9")}}), false)
	d.NotifyMsg(rawChunk("n2", g, 0, 1, addrs("192.0.2.9")))
	if got := held(r, "n2"); got.gen != g+2 {
		t.Errorf("an older set replaced a newer one: %v", got)
	}

	// A digest beyond the bound is not heard: n2 is not pulled for it.
	(*pinger)(r).NotifyPingComplete(peerNode(t, "n2", Meta{}), time.Millisecond, encodeDigest(digest{gen: math.MaxUint64, announceGen: math.MaxUint64}))
	r.mu.Lock()
	heard := r.members["n2"].heard
	r.mu.Unlock()
	if heard.gen == math.MaxUint64 {
		t.Errorf("digest with generation MaxUint64 heard")
	}
}

// A forged set that is within genAhead of the member's meta is taken (no
// receiver can tell it from a real one), but it is relayed back to the
// member, which moves past it: the member's set is frozen for one round
// trip at most.
func TestMemberMovesPastAForgedSetOfItsOwn(t *testing.T) {
	owner := idleRing(t, "n2", nil)
	peer := idleRing(t, "n1", nil)
	g := owner.LocalMeta().AnnounceGen
	owner.SetAnnounced(addrs("192.0.2.1"))
	(*events)(peer).NotifyJoin(peerNode(t, "n2", owner.LocalMeta()))

	forged := rawChunk("n2", g+1000, 0, 1, addrs("203.0.113.66"))
	(*delegate)(peer).NotifyMsg(forged)
	if got := held(peer, "n2"); got.gen != g+1000 {
		t.Fatalf("forged set within the bound not taken: %v", got)
	}
	// The peer relays it; the owner hears its own name at a newer
	// generation and jumps past it.
	relayed := peer.queue.GetBroadcasts(0, 1<<20)
	if len(relayed) != 1 {
		t.Fatalf("peer relays %d chunks, want 1", len(relayed))
	}
	(*delegate)(owner).NotifyMsg(relayed[0])
	m := owner.LocalMeta()
	if m.AnnounceGen <= g+1000 || m.Gen < m.AnnounceGen {
		t.Fatalf("owner did not move past the forged generation: %+v", m)
	}
	// Its re-broadcast set replaces the forged one at the peer.
	(*events)(peer).NotifyUpdate(peerNode(t, "n2", m))
	for _, msg := range owner.queue.GetBroadcasts(0, 1<<20) {
		(*delegate)(peer).NotifyMsg(msg)
	}
	if got := held(peer, "n2"); got.gen != m.AnnounceGen || !slices.Equal(got.addrs, addrs("192.0.2.1")) {
		t.Errorf("peer holds %v, want the owner's set at %d", got, m.AnnounceGen)
	}
}

// A node's own generation never follows a peer's report beyond its clock:
// MaxUint64 would wrap Gen to 0 and freeze its set everywhere.
func TestOwnGenerationNeverWraps(t *testing.T) {
	r := idleRing(t, "n1", nil)
	d := (*delegate)(r)
	before := r.LocalMeta()
	for _, forged := range []uint64{math.MaxUint64, math.MaxUint64 - 1, clockLimit(time.Now()) + uint64(time.Minute)} {
		d.NotifyMsg(rawChunk("n1", forged, 0, 1, addrs("203.0.113.66")))
		d.MergeRemoteState(encodeState(map[string]announcedSet{"n1": {gen: forged}}), false)
	}
	if after := r.LocalMeta(); after.Gen != before.Gen || after.AnnounceGen != before.AnnounceGen {
		t.Fatalf("forged own generations moved Gen %d→%d, AnnounceGen %d→%d", before.Gen, after.Gen, before.AnnounceGen, after.AnnounceGen)
	}
	// A peer remembering a newer generation within the clock bound (this
	// node restarted with its clock set back) still moves it past.
	newer := before.Gen + uint64(time.Hour)
	d.MergeRemoteState(encodeState(map[string]announcedSet{"n1": {gen: newer}}), false)
	if after := r.LocalMeta(); after.AnnounceGen != newer+1 || after.Gen != newer+1 {
		t.Errorf("after a peer reported %d: Gen %d AnnounceGen %d, want both %d", newer, after.Gen, after.AnnounceGen, newer+1)
	}
}

// A restarted member (a higher wall-clock Gen) replaces its old set once
// its new meta arrives; one whose clock went back does too, because the
// set held from before is then beyond its bound and dropped.
func TestRestartedMemberReplacesItsSet(t *testing.T) {
	r := idleRing(t, "n1", nil)
	d := (*delegate)(r)
	ev := (*events)(r)
	g := uint64(time.Now().Add(-time.Hour).UnixNano())
	ev.NotifyJoin(peerNode(t, "n2", Meta{Gen: g, AnnounceGen: g}))
	d.NotifyMsg(rawChunk("n2", g, 0, 1, addrs("192.0.2.1")))

	// Restarted 10 s later: its first chunk outruns its meta, and is
	// dropped until the meta anchors it.
	g2 := g + uint64(10*time.Second)
	d.NotifyMsg(rawChunk("n2", g2, 0, 1, addrs("192.0.2.2")))
	if got := held(r, "n2"); got.gen != g {
		t.Fatalf("restarted member's set taken before its meta: %v", got)
	}
	ev.NotifyUpdate(peerNode(t, "n2", Meta{Gen: g2, AnnounceGen: g2}))
	d.NotifyMsg(rawChunk("n2", g2, 0, 1, addrs("192.0.2.2")))
	if got := held(r, "n2"); got.gen != g2 || !slices.Equal(got.addrs, addrs("192.0.2.2")) {
		t.Fatalf("restarted member's set not taken: %v", got)
	}

	// Restarted again with its clock a minute back: the set held from
	// before is beyond its new meta's bound and dropped; its new set is
	// taken, by push-pull here.
	g3 := g2 - uint64(time.Minute)
	ev.NotifyJoin(peerNode(t, "n2", Meta{Gen: g3, AnnounceGen: g3}))
	if got := held(r, "n2"); got.gen != 0 || len(got.addrs) != 0 {
		t.Fatalf("set from before a restart with the clock set back still held: %v", got)
	}
	r.mu.Lock()
	lagging := r.members["n2"].lagging()
	r.mu.Unlock()
	if !lagging {
		t.Error("member whose stale set was dropped is not lagging: it would not be pulled")
	}
	d.MergeRemoteState(encodeState(map[string]announcedSet{"n2": {gen: g3, addrs: addrs("192.0.2.3")}}), false)
	if got := held(r, "n2"); got.gen != g3 || !slices.Equal(got.addrs, addrs("192.0.2.3")) {
		t.Errorf("set after a restart with the clock set back not taken: %v", got)
	}
}

// Sets of members memberlist has not reported are bounded in number and by
// the clock, and dropped when the member's meta says they are beyond it.
func TestUnknownMembersSetsBounded(t *testing.T) {
	r := idleRing(t, "n1", nil)
	d := (*delegate)(r)
	now := uint64(time.Now().UnixNano())
	for i := range 2 * maxUnknownMembers {
		d.NotifyMsg(rawChunk(fmt.Sprintf("ghost%d", i), now, 0, 1, addrs("203.0.113.1")))
	}
	r.mu.Lock()
	n := len(r.members)
	r.mu.Unlock()
	if n != maxUnknownMembers {
		t.Errorf("%d entries for unknown members, want the cap %d", n, maxUnknownMembers)
	}
	if got := r.InputErrors()[InputUnknownMember]; got != maxUnknownMembers {
		t.Errorf("InputErrors[unknown-member] = %d, want %d", got, maxUnknownMembers)
	}
	d.MergeRemoteState(encodeState(map[string]announcedSet{"ghost0": {gen: math.MaxUint64}}), false)
	if got := held(r, "ghost0"); got.gen != now {
		t.Errorf("unknown member's set at MaxUint64 taken: %v", got)
	}
	// ghost0 joins; its meta says its generations are far lower than the
	// set taken for it: that set was forged, and is dropped.
	(*events)(r).NotifyJoin(peerNode(t, "ghost0", Meta{Gen: now - uint64(time.Hour), AnnounceGen: now - uint64(time.Hour)}))
	if got := held(r, "ghost0"); got.gen != 0 {
		t.Errorf("set beyond the joined member's bound kept: %v", got)
	}
}

// Oversized metadata is rejected without being decoded; the member keeps
// the metadata last read, and the rejection is logged once per member and
// interval however often memberlist delivers it.
func TestOversizedMetaRejected(t *testing.T) {
	var logs lineCounter
	r := idleRing(t, "n1", slog.New(&logs))
	ev := (*events)(r)
	good := Meta{Gen: 5, Labels: map[string]string{"rack": "a1"}, Health: HealthDraining}
	ev.NotifyJoin(peerNode(t, "n2", good))

	big, err := encodeMeta(Meta{Gen: 6, Labels: map[string]string{"rack": strings.Repeat("b", 300)}})
	if err != nil {
		t.Fatal(err)
	}
	big = append(big, make([]byte, memberlist.MetaMaxSize)...) // still decodable, but oversized
	if _, err := decodeMeta(big); !errors.Is(err, errMetaTooLarge) {
		t.Fatalf("decodeMeta(%d bytes) = %v, want errMetaTooLarge", len(big), err)
	}
	n := peerNode(t, "n2", good)
	n.Meta = big
	for range 100 {
		ev.NotifyUpdate(n)
	}
	m, ok := findMember(r, "n2")
	if !ok || m.Meta.Labels["rack"] != "a1" || m.Meta.Health != HealthDraining || m.Meta.Gen != 5 {
		t.Errorf("after oversized meta n2 has %+v, want the last readable meta", m.Meta)
	}
	// Another member's rejection is logged on its own.
	n3 := peerNode(t, "n3", Meta{})
	n3.Meta = big
	ev.NotifyJoin(n3)
	if got := r.InputErrors()[InputMeta]; got != 101 {
		t.Errorf("InputErrors[meta] = %d, want 101", got)
	}
	if got := logs.count("gossip member metadata rejected"); got != 2 {
		t.Errorf("%d lines about rejected metadata, want 2 (one per member)", got)
	}
	if got := logs.count("gossip member metadata unreadable"); got != 0 {
		t.Errorf("oversized metadata decoded anyway: %d lines say it is unreadable", got)
	}
}

func findMember(r *Ring, name string) (Member, bool) {
	for _, m := range r.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// The review's finding: decodeState allocated from the counts in the
// message before checking them against its length (1 MiB in, 136 MiB
// allocated). Every shape of a 1 MiB state now costs a few MiB at most.
func TestDecodeStateAllocationBoundedByInput(t *testing.T) {
	const size = 1 << 20
	pad := func(b []byte) []byte { return append(b, make([]byte, max(0, size-len(b)))...) }
	head := func(n uint64) []byte { return binary.AppendUvarint([]byte{formatV1, kindState}, n) }
	manySets := func(n, addrsEach int) []byte {
		b := head(uint64(n))
		for i := range n {
			b = appendString(b, fmt.Sprintf("n%d", i))
			b = binary.AppendUvarint(b, 1)
			b = binary.AppendUvarint(b, uint64(addrsEach))
			for j := range addrsEach {
				b = appendAddr(b, netip.AddrFrom4([4]byte{198, 51, byte(j >> 8), byte(j)}))
			}
		}
		return b
	}
	oneSetClaims := func(claim uint64) []byte {
		b := appendString(head(1), "n1")
		b = binary.AppendUvarint(b, 1)
		return pad(binary.AppendUvarint(b, claim))
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"count of sets claims the whole message", pad(head(size))},
		{"count of sets claims 2^62", pad(head(1 << 62))},
		{"one set claims the whole message in addresses", oneSetClaims(size)},
		{"one set claims 2^40 addresses", oneSetClaims(1 << 40)},
		{"many empty sets", pad(manySets(size/8, 0))},
		{"the most sets, one address each", pad(manySets(maxStateSets, 1))},
		{"one set of addresses", pad(manySets(1, (size-16)/5))},
	} {
		var err error
		got := allocated(func() { _, err = decodeState(tc.b) })
		t.Logf("%s: %d bytes in, %d allocated, err %v", tc.name, len(tc.b), got, err)
		if got > 8*size {
			t.Errorf("%s: %d bytes allocated for a %d-byte state, want ≤ %d", tc.name, got, len(tc.b), 8*size)
		}
	}
}

// Counts in chunks and meta are checked against the bytes left.
func TestDecodersRejectCountsBeyondTheMessage(t *testing.T) {
	chunk := rawChunk("n2", 1, 0, 1, nil)
	chunk = append(chunk[:len(chunk)-1], 100) // 100 addresses, none present
	if _, err := decodeChunk(chunk[2:]); err == nil {
		t.Error("chunk claiming 100 absent addresses decoded")
	}
	over := rawChunk("n2", 1, 0, 1, manyAddrs(maxChunkAddrs+1, 7)[:maxChunkAddrs+1])
	if _, err := decodeChunk(over[2:]); err == nil {
		t.Errorf("chunk of %d addresses (over %d) decoded", maxChunkAddrs+1, maxChunkAddrs)
	}
	meta, _ := encodeMeta(Meta{Version: "v"})
	meta = meta[:len(meta)-2]                // drop the label and unhealthy counts
	meta = binary.AppendUvarint(meta, 1<<20) // a million labels, in no bytes
	if _, err := decodeMeta(meta); err == nil {
		t.Error("meta claiming a million absent labels decoded")
	}
}

// lineCounter is a slog.Handler that counts records by message.
type lineCounter struct {
	mu    sync.Mutex // guards lines
	lines []slog.Record
}

func (c *lineCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c *lineCounter) WithGroup(string) slog.Handler                { return c }
func (c *lineCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, r.Clone())
	return nil
}

// count returns the records whose message starts with prefix.
func (c *lineCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.lines {
		if strings.HasPrefix(r.Message, prefix) {
			n++
		}
	}
	return n
}

// atLeast returns the records at level or above.
func (c *lineCounter) atLeast(level slog.Level) []slog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []slog.Record
	for _, r := range c.lines {
		if r.Level >= level {
			out = append(out, r)
		}
	}
	return out
}
