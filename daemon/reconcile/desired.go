package reconcile

import (
	"context"
	"maps"
	"net/netip"
	"slices"
)

// Announcement is one IP this node must make the network deliver to it.
type Announcement struct {
	Addr       netip.Addr
	VIP        string   // owning static VIP or "namespace/service"
	Mode       string   // "l2" | "bgp"
	Interfaces []string // L2: explicit interface choice; empty = default selection
	Local      bool     // add the address to the local dummy link
	// Handover: this node no longer owns the address and answers it only
	// until the next owner is seen announcing it; no gratuitous bursts.
	Handover bool
}

func (a Announcement) equal(b Announcement) bool {
	return a.Addr == b.Addr && a.VIP == b.VIP && a.Mode == b.Mode &&
		a.Local == b.Local && a.Handover == b.Handover && slices.Equal(a.Interfaces, b.Interfaces)
}

// Desired is the complete set of announcements for this node, keyed by IP.
type Desired map[netip.Addr]Announcement

// Diff is what an output must do to move from one Desired to the next.
// Each slice is sorted by address so outputs act (and log) deterministically.
type Diff struct {
	Add    []Announcement
	Change []Announcement // same address, other attributes: the new value
	Remove []Announcement // the old value
}

// Empty reports whether the diff asks for nothing.
func (d Diff) Empty() bool { return len(d.Add)+len(d.Change)+len(d.Remove) == 0 }

// DiffOf returns the steps from old to next.
func DiffOf(old, next Desired) Diff {
	var d Diff
	for addr, n := range next {
		o, ok := old[addr]
		switch {
		case !ok:
			d.Add = append(d.Add, n)
		case !o.equal(n):
			d.Change = append(d.Change, n)
		}
	}
	for addr, o := range old {
		if _, ok := next[addr]; !ok {
			d.Remove = append(d.Remove, o)
		}
	}
	byAddr := func(a, b Announcement) int { return a.Addr.Compare(b.Addr) }
	slices.SortFunc(d.Add, byAddr)
	slices.SortFunc(d.Change, byAddr)
	slices.SortFunc(d.Remove, byAddr)
	return d
}

// Output receives diffs. Apply is called only from the reconcile loop and
// may block on I/O; it returns an error if any step failed, and must then
// be safe to call again with the same diff (steps are idempotent).
type Output interface {
	Name() string
	Apply(ctx context.Context, d Diff) error
}

// Applier remembers, per output, what was last applied successfully, so each
// output gets exactly the diff from its own state (an output that failed
// gets its remaining steps again on the next pass).
type Applier struct {
	outputs []Output
	applied []Desired // guarded by the reconcile loop: one pass at a time
}

// NewApplier returns an applier for outputs, all starting from nothing.
func NewApplier(outputs ...Output) *Applier {
	a := &Applier{outputs: outputs, applied: make([]Desired, len(outputs))}
	for i := range a.applied {
		a.applied[i] = Desired{}
	}
	return a
}

// Apply hands every output its diff to next. It tries every output even if
// one fails, and returns the first error.
func (a *Applier) Apply(ctx context.Context, next Desired) error {
	var first error
	for i, o := range a.outputs {
		d := DiffOf(a.applied[i], next)
		if d.Empty() {
			continue
		}
		if err := o.Apply(ctx, d); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		a.applied[i] = maps.Clone(next)
	}
	return first
}

// Sorted returns the announcements ordered by address.
func (d Desired) Sorted() []Announcement {
	out := slices.Collect(maps.Values(d))
	slices.SortFunc(out, func(a, b Announcement) int { return a.Addr.Compare(b.Addr) })
	return out
}
