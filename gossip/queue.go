package gossip

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// broadcastQueue holds this node's announced-set chunks and the ones it
// relays until each has been sent retransmitLimit times (memberlist's rule:
// RetransmitMult × ⌈log10(n+1)⌉), fewest transmissions first, then newest.
//
// It replaces memberlist.TransmitLimitedQueue, which in v0.7.0 silently
// drops queued broadcasts: it keys its B-tree by (transmits, length, id)
// and resets its id counter to 0 whenever the tree is momentarily empty —
// also in the middle of GetBroadcasts, when its only item is taken out to
// be re-inserted one tier up. A broadcast queued next then reuses a live
// id, and once both sit in the same tier (a packet with room for only one
// of them), the one re-inserted replaces the other, which is never sent
// and never Finished (hashicorp/memberlist#263, unmerged). Chunks of
// different nodes often have exactly the same length (names of one length,
// generations of one size, as many addresses), so in a 5-node simulation
// the latest set of a node sometimes reached no peer at all. memberlist's
// own queue (alive messages: metadata updates) has the same flaw; the
// probe-ack digest and the pull repair what it loses (see pinger), and
// metaLoop re-sends an update whose broadcast never finished.
type broadcastQueue struct {
	numNodes func() int
	mult     int

	mu    sync.Mutex // guards items and seq
	items []*queued
	seq   uint64
}

type queued struct {
	b         *chunkBroadcast
	transmits int
	seq       uint64 // queue order: higher is newer
}

// Queue adds b, dropping every queued chunk it invalidates.
func (q *broadcastQueue) Queue(b *chunkBroadcast) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = slices.DeleteFunc(q.items, func(it *queued) bool { return b.Invalidates(it.b) })
	q.seq++
	q.items = append(q.items, &queued{b: b, seq: q.seq})
}

// GetBroadcasts implements memberlist.Delegate.GetBroadcasts: the chunks
// that fit limit, each costing overhead more bytes.
func (q *broadcastQueue) GetBroadcasts(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	transmitLimit := retransmitLimit(q.mult, q.numNodes())
	slices.SortFunc(q.items, func(a, b *queued) int {
		return cmp.Or(cmp.Compare(a.transmits, b.transmits), cmp.Compare(b.seq, a.seq))
	})
	var out [][]byte
	used := 0
	kept := q.items[:0]
	for _, it := range q.items {
		if msg := it.b.msg; used+overhead+len(msg) <= limit {
			out = append(out, msg)
			used += overhead + len(msg)
			it.transmits++
			if it.transmits >= transmitLimit {
				continue
			}
		}
		kept = append(kept, it)
	}
	clear(q.items[len(kept):])
	q.items = kept
	return out
}

// Len returns the number of queued chunks.
func (q *broadcastQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// retransmitLimit is memberlist's: mult × ⌈log10(n+1)⌉.
func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// chunkBroadcast is one announced-set chunk in the broadcast queue. A newer
// generation of the same node's set replaces every older chunk; the same
// chunk queued twice (relayed back) replaces itself.
type chunkBroadcast struct {
	node string
	gen  uint64
	idx  int
	msg  []byte
}

// Invalidates reports whether b makes other pointless to send.
func (b *chunkBroadcast) Invalidates(other *chunkBroadcast) bool {
	return other.node == b.node && (other.gen < b.gen || (other.gen == b.gen && other.idx == b.idx))
}
