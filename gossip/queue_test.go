package gossip

import (
	"slices"
	"testing"

	"github.com/hashicorp/memberlist"
)

// mlChunk adapts a chunk to memberlist's queue, for the regression test.
type mlChunk struct{ *chunkBroadcast }

func (b mlChunk) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(mlChunk)
	return ok && b.chunkBroadcast.Invalidates(o.chunkBroadcast)
}
func (b mlChunk) Message() []byte { return b.msg }
func (b mlChunk) Finished()       {}

// sameLengthChunks returns one single-chunk set of each of two nodes, of
// exactly the same length (as in a 5-node ring: n1 and n2 each announcing
// two addresses).
func sameLengthChunks(t *testing.T) (a, b *chunkBroadcast) {
	t.Helper()
	ma := encodeChunks("n1", 1000, addrs("192.0.2.10", "192.0.2.20"))[0]
	mb := encodeChunks("n2", 2000, addrs("192.0.2.14", "192.0.2.21"))[0]
	if len(ma) != len(mb) {
		t.Fatalf("chunks of %d and %d bytes", len(ma), len(mb))
	}
	return &chunkBroadcast{node: "n1", gen: 1000, msg: ma}, &chunkBroadcast{node: "n2", gen: 2000, msg: mb}
}

// The sequence in which memberlist v0.7.0's TransmitLimitedQueue loses a
// chunk: a's first transmission empties the queue for a moment (id counter
// reset), b gets a's id, and a packet with room for one chunk moves b into
// a's tier, where it replaces a. broadcastQueue must send a its 4 times.
func TestQueueKeepsSameLengthChunks(t *testing.T) {
	a, b := sameLengthChunks(t)
	room := len(a.msg) + 1 // one chunk per packet

	sent := func(get func(int) [][]byte) map[string]int {
		got := map[string]int{}
		for range 20 {
			for _, m := range get(room) {
				got[string(m)]++
			}
		}
		return got
	}
	run := func(queue func(*chunkBroadcast), get func(limit int) [][]byte) map[string]int {
		queue(a)
		first := get(1 << 20)
		queue(b)
		got := sent(get)
		for _, m := range first {
			got[string(m)]++
		}
		return got
	}

	ml := &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 5 }, RetransmitMult: 4}
	mlSent := run(func(c *chunkBroadcast) { ml.QueueBroadcast(mlChunk{c}) },
		func(limit int) [][]byte { return ml.GetBroadcasts(0, limit) })
	t.Logf("memberlist.TransmitLimitedQueue sent n1's chunk %d times, n2's %d times", mlSent[string(a.msg)], mlSent[string(b.msg)])

	q := &broadcastQueue{numNodes: func() int { return 5 }, mult: 4}
	got := run(q.Queue, func(limit int) [][]byte { return q.GetBroadcasts(0, limit) })
	if got[string(a.msg)] != 4 || got[string(b.msg)] != 4 {
		t.Errorf("broadcastQueue sent n1's chunk %d times and n2's %d times, want 4 each", got[string(a.msg)], got[string(b.msg)])
	}
	if q.Len() != 0 {
		t.Errorf("%d chunks left after their transmissions", q.Len())
	}
}

func TestQueueOrderAndInvalidation(t *testing.T) {
	q := &broadcastQueue{numNodes: func() int { return 3 }, mult: 2}
	msg := func(s string) []byte { return []byte(s) }
	q.Queue(&chunkBroadcast{node: "n1", gen: 1, idx: 0, msg: msg("n1g1c0")})
	q.Queue(&chunkBroadcast{node: "n1", gen: 1, idx: 1, msg: msg("n1g1c1")})
	q.Queue(&chunkBroadcast{node: "n2", gen: 5, idx: 0, msg: msg("n2g5c0")})
	// A newer generation of n1 drops both older chunks; the same chunk
	// queued again (relayed back) replaces itself.
	q.Queue(&chunkBroadcast{node: "n1", gen: 2, idx: 0, msg: msg("n1g2c0")})
	q.Queue(&chunkBroadcast{node: "n2", gen: 5, idx: 0, msg: msg("n2g5c0")})
	if q.Len() != 2 {
		t.Fatalf("%d queued, want 2", q.Len())
	}
	// Newest first within a tier; one that does not fit waits.
	if got := q.GetBroadcasts(1, 7); !slices.EqualFunc(got, [][]byte{msg("n2g5c0")}, slices.Equal) {
		t.Errorf("first packet %q, want n2's chunk", got)
	}
	// Fewest transmissions first: n1's chunk before n2's second send.
	if got := q.GetBroadcasts(1, 7); !slices.EqualFunc(got, [][]byte{msg("n1g2c0")}, slices.Equal) {
		t.Errorf("second packet %q, want n1's chunk", got)
	}
	// The limit is 2 × ⌈log10(4)⌉ = 2 transmissions each.
	if got := q.GetBroadcasts(1, 100); len(got) != 2 || q.Len() != 0 {
		t.Errorf("third packet %q, %d left; want both, none left", got, q.Len())
	}
	if got := q.GetBroadcasts(1, 100); got != nil {
		t.Errorf("empty queue sent %q", got)
	}
}
