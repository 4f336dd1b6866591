package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func ann(addr, vip string) Announcement {
	return Announcement{Addr: netip.MustParseAddr(addr), VIP: vip, Mode: "l2"}
}

func desired(as ...Announcement) Desired {
	d := Desired{}
	for _, a := range as {
		d[a.Addr] = a
	}
	return d
}

func TestDiffOf(t *testing.T) {
	local := ann("192.0.2.2", "b")
	local.Local = true
	tests := []struct {
		name      string
		old, next Desired
		want      Diff
	}{
		{"empty", nil, nil, Diff{}},
		{"add sorted", nil, desired(ann("192.0.2.9", "a"), ann("192.0.2.1", "a")),
			Diff{Add: []Announcement{ann("192.0.2.1", "a"), ann("192.0.2.9", "a")}}},
		{"remove", desired(ann("2001:db8::1", "a")), Desired{},
			Diff{Remove: []Announcement{ann("2001:db8::1", "a")}}},
		{"change attrs", desired(ann("192.0.2.2", "b")), desired(local),
			Diff{Change: []Announcement{local}}},
		{"unchanged", desired(ann("192.0.2.2", "b")), desired(ann("192.0.2.2", "b")), Diff{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DiffOf(tt.old, tt.next)
			if d := cmp.Diff(tt.want, got, addrCmp); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if got.Empty() != tt.want.Empty() {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
}

type flakyOutput struct {
	fail  bool
	diffs []Diff
}

func (f *flakyOutput) Name() string { return "flaky" }
func (f *flakyOutput) Apply(_ context.Context, d Diff) error {
	f.diffs = append(f.diffs, d)
	if f.fail {
		return errors.New("netlink said no")
	}
	return nil
}

func TestApplierRetriesFailedOutputOnly(t *testing.T) {
	good, bad := &flakyOutput{}, &flakyOutput{fail: true}
	a := NewApplier(good, bad)
	s1 := desired(ann("192.0.2.1", "a"))
	if err := a.Apply(context.Background(), s1); err == nil {
		t.Fatal("want the failing output's error")
	}
	bad.fail = false
	if err := a.Apply(context.Background(), s1); err != nil {
		t.Fatal(err)
	}
	if len(good.diffs) != 1 {
		t.Errorf("the healthy output got %d diffs, want 1 (nothing changed for it)", len(good.diffs))
	}
	if len(bad.diffs) != 2 || len(bad.diffs[1].Add) != 1 {
		t.Errorf("the failed output must get its add again: %+v", bad.diffs)
	}
}

func TestLoopCoalescesTriggers(t *testing.T) {
	var (
		passes  atomic.Int32
		entered = make(chan struct{}, 16)
		release = make(chan struct{})
	)
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		passes.Add(1)
		entered <- struct{}{}
		<-release
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	l.Trigger("first")
	<-entered // pass 1 is running
	for range 10 {
		l.Trigger("burst") // all of these fold into one more pass
	}
	release <- struct{}{} // finish pass 1
	<-entered             // pass 2 starts
	release <- struct{}{}
	<-l.FirstPass()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := passes.Load(); got != 2 {
		t.Errorf("passes = %d, want 2: a burst of triggers during a pass is one more pass", got)
	}
}

func TestLoopRetriesFailedPass(t *testing.T) {
	var calls atomic.Int32
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		if calls.Add(1) < 3 {
			return errors.New("transient")
		}
		return nil
	})
	l.MinBackoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Trigger("once")
	select {
	case <-l.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("no successful pass: a failed pass must be retried without a new trigger")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if n, err := l.Stats(); n != 3 || err != nil {
		t.Errorf("stats = %d, %v; want 3, nil", n, err)
	}
}

func TestLoopHealthyDetectsWedgedPass(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Unix(1000, 0)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	inPass, release := make(chan struct{}), make(chan struct{})
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		close(inPass)
		<-release
		return nil
	})
	l.Now = clock
	l.StuckAfter = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Trigger("x")
	<-inPass
	if err := l.Healthy(); err != nil {
		t.Errorf("fresh pass reported unhealthy: %v", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if err := l.Healthy(); err == nil || !strings.Contains(err.Error(), "running for") {
		t.Errorf("wedged pass not detected: %v", err)
	}
	close(release)
	<-l.FirstPass()
	if err := l.Healthy(); err != nil {
		t.Errorf("idle loop unhealthy: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
