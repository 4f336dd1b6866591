//go:build linux

package kubebench_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tracker holds, per Service index, when its create returned and when the
// watch first showed it with an IP; and, in the watch's order (the order
// etcd committed the writes), which Services hold each IP, to catch an IP
// in two Services' status at once and a Service whose IP changed.
type tracker struct {
	mu       sync.Mutex // guards the fields below
	createAt []time.Time
	ipAt     []time.Time
	cur      []string         // by index: the IP its status holds now
	holders  map[string][]int // IP → the Services whose status holds it
	dups     int
	changes  int
	examples []string // the first few of either
}

func newTracker(n int) *tracker {
	return &tracker{createAt: make([]time.Time, n), ipAt: make([]time.Time, n), cur: make([]string, n),
		holders: make(map[string][]int, n)}
}

func (t *tracker) created(i int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.createAt[i] = at
}

// assign notes that the watch showed Service name with ip ("" for none).
func (t *tracker) assign(name, ip string, at time.Time) {
	i, err := strconv.Atoi(strings.TrimPrefix(name, "svc-"))
	if err != nil || i < 0 || i >= len(t.ipAt) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur[i]
	if old == ip {
		return
	}
	if old != "" {
		t.holders[old] = slices.DeleteFunc(t.holders[old], func(j int) bool { return j == i })
		if len(t.holders[old]) == 0 {
			delete(t.holders, old)
		}
		t.changes++
		t.example(fmt.Sprintf("%s changed from %s to %q", name, old, ip))
	}
	t.cur[i] = ip
	if ip == "" {
		return
	}
	for _, j := range t.holders[ip] {
		t.dups++
		t.example(fmt.Sprintf("%s given to %s while %s held it", ip, name, serviceName(j)))
	}
	t.holders[ip] = append(t.holders[ip], i)
	if t.ipAt[i].IsZero() {
		t.ipAt[i] = at
	}
}

func (t *tracker) example(s string) {
	if len(t.examples) < 8 {
		t.examples = append(t.examples, s)
	}
}

// assignedIn counts the Services in [from, to) seen with an IP.
func (t *tracker) assignedIn(from, to int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := from; i < to; i++ {
		if !t.ipAt[i].IsZero() {
			n++
		}
	}
	return n
}

// latencies returns each Service's time from its create's return to its
// first IP (0 when the watch was faster than the create's answer), and
// the latest IP time.
func (t *tracker) latencies(from, to int) ([]time.Duration, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		out  []time.Duration
		last time.Time
	)
	for i := from; i < to; i++ {
		out = append(out, max(t.ipAt[i].Sub(t.createAt[i]), 0))
		if t.ipAt[i].After(last) {
			last = t.ipAt[i]
		}
	}
	return out, last
}

// stability returns the IPs seen in two Services at once, the IP changes,
// and examples of both.
func (t *tracker) stability() (dups, changes int, examples []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dups, t.changes, slices.Clone(t.examples)
}
