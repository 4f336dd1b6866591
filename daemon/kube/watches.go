package kube

import (
	"cmp"
	"slices"
	"time"

	"github.com/hostlb/hostlb/daemon/ipam"
)

// WatchStatus is the health of one kind's watch, for the metrics.
type WatchStatus struct {
	Kind   Kind
	Synced bool // the cache holds a full list
	// Restarts counts the list or watch calls that failed since start
	// (each one client-go retries with backoff, re-listing if it must).
	// A watch the API server ends on its timeout and client-go renews is
	// no failure and not counted.
	Restarts uint64
	// LastSync is the last time the cache was seen to move: an event, or
	// a new resource version (the API server's bookmarks, sent to an idle
	// watch too) as of this call. Zero before the first.
	LastSync time.Time
}

// watchStats is one kind's counters; guarded by Source.mu.
type watchStats struct {
	restarts  uint64
	lastEvent time.Time
	rv        string
	rvAt      time.Time
}

// watchLocked returns kind's counters, creating them. Call with s.mu held.
func (s *Source) watchLocked(kind Kind) *watchStats {
	if s.watches == nil {
		s.watches = map[Kind]*watchStats{}
	}
	w := s.watches[kind]
	if w == nil {
		w = &watchStats{}
		s.watches[kind] = w
	}
	return w
}

// noteEvent records that kind's cache delivered an object.
func (s *Source) noteEvent(kind Kind) {
	now := s.now()
	s.mu.Lock()
	s.watchLocked(kind).lastEvent = now
	s.mu.Unlock()
}

// Watches returns the status of every watched kind, sorted by kind, and of
// the IPAM Lease's watch (restarts only). It reads the informers' local
// state: no API request.
func (s *Source) Watches() []WatchStatus {
	now := s.now()
	infs := s.informers()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WatchStatus, 0, len(infs)+1)
	for k, inf := range infs {
		w := s.watchLocked(k)
		if rv := inf.LastSyncResourceVersion(); rv != w.rv {
			w.rv, w.rvAt = rv, now
		}
		last := w.rvAt
		if w.lastEvent.After(last) {
			last = w.lastEvent
		}
		out = append(out, WatchStatus{Kind: k, Synced: inf.HasSynced(), Restarts: w.restarts, LastSync: last})
	}
	if w, ok := s.watches[KindLease]; ok {
		out = append(out, WatchStatus{Kind: KindLease, Synced: true, Restarts: w.restarts})
	}
	slices.SortFunc(out, func(a, b WatchStatus) int { return cmp.Compare(a.Kind, b.Kind) })
	return out
}

// IPAMStatus is the IPAM controller's state, for the metrics.
type IPAMStatus struct {
	Leader bool
	// Pools are the pools' usage as of the leader's last pass (nil on a
	// follower: only the leader allocates).
	Pools []ipam.PoolUsage
	// Failing counts the Services whose last allocation failed in whole
	// or in part (leader only).
	Failing int
	// AllocationFailures counts the AllocationFailed Events this node
	// emitted since start (one per new failure of a Service, not one per
	// pass).
	AllocationFailures uint64
}

// Status returns the controller's state; it never blocks on the API.
func (c *IPAM) Status() IPAMStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return IPAMStatus{Leader: c.leader, Pools: slices.Clone(c.usage), Failing: c.failing, AllocationFailures: c.allocFailures}
}

// noteUsage keeps a pass's pool usage and failures for Status.
func (c *IPAM) noteUsage(usage []ipam.PoolUsage, results []ipam.Result) {
	failing := 0
	for _, r := range results {
		if len(r.Failures) > 0 {
			failing++
		}
	}
	c.mu.Lock()
	c.usage, c.failing = usage, failing
	c.mu.Unlock()
}

// Watches is the Source's Watches.
func (k *Kubernetes) Watches() []WatchStatus { return k.Source.Watches() }

// IPAMStatus is the IPAM controller's Status.
func (k *Kubernetes) IPAMStatus() IPAMStatus { return k.IPAM.Status() }
