package heartbeat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lossBound is the functional bound on detection asserted in these tests:
// Misses × Interval (120 ms) plus a generous slack for a shared machine.
// The measured times are logged.
const lossBound = 500 * time.Millisecond

// mesh makes every node a target and a watcher of every other.
func mesh(ns ...*node) {
	for _, n := range ns {
		others := peers(ns...)
		delete(others, n.name)
		n.h.SetTargets(others)
		n.h.SetWatched(others)
	}
}

func TestHeartbeatsFlowBetweenThreeNodes(t *testing.T) {
	a, b, c := startNode(t, "a"), startNode(t, "b"), startNode(t, "c")
	mesh(a, b, c)
	for _, n := range []*node{a, b, c} {
		for _, o := range []*node{a, b, c} {
			if o != n {
				waitState(t, n, o.name, Alive, 2*time.Second)
			}
		}
	}
	for _, n := range []*node{a, b, c} {
		if s := n.h.Stats(); s.Losses != 0 || s.Received == 0 || len(s.Rejected) != 0 {
			t.Errorf("%s: %+v, want datagrams, no loss, nothing rejected", n.name, s)
		}
	}
}

// A paused sender (a stopped process, as far as its watchers can tell) is
// lost within Misses × Interval plus slack, and resumes when it sends again.
func TestPausedOwnerIsLostThenResumes(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.h.SetTargets(peers(b))
	b.h.SetWatched(peers(a))
	waitState(t, b, "a", Alive, 2*time.Second)

	paused := time.Now()
	a.h.PauseSending(true)
	lost := waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second).Sub(paused)
	t.Logf("paused owner lost after %v (Misses × Interval = %v)", lost.Round(time.Millisecond), DefaultMisses*DefaultInterval)
	if lost > lossBound {
		t.Errorf("lost after %v, want < %v", lost, lossBound)
	}
	if st, _ := stateOf(b, "a"); st != Lost {
		t.Errorf("state %v after OnLoss, want lost", st)
	}

	resumed := time.Now()
	a.h.PauseSending(false)
	back := waitEvent(t, b.resume, "OnResume", "a", 5*time.Second).Sub(resumed)
	t.Logf("resumed owner heard again after %v", back.Round(time.Millisecond))
	if back > lossBound {
		t.Errorf("resumed after %v, want < %v", back, lossBound)
	}
	if s := b.h.Stats(); s.Losses != 1 || s.Resumes != 1 {
		t.Errorf("stats %+v, want 1 loss and 1 resume", s)
	}
}

// A closed Heart (a crashed process) is lost the same way.
func TestStoppedOwnerIsLost(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.h.SetTargets(peers(b))
	b.h.SetWatched(peers(a))
	waitState(t, b, "a", Alive, 2*time.Second)
	stopped := time.Now()
	a.stop()
	lost := waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second).Sub(stopped)
	t.Logf("stopped owner lost after %v", lost.Round(time.Millisecond))
	if lost > lossBound {
		t.Errorf("lost after %v, want < %v", lost, lossBound)
	}
}

// The heir declares loss; the owner, alive though silent, hears that from
// the heir's watch requests (flagLost) and can re-announce its IPs.
func TestLostOwnerIsToldByItsHeir(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.h.SetTargets(peers(b))
	b.h.SetWatched(peers(a))
	waitState(t, b, "a", Alive, 2*time.Second)
	a.h.PauseSending(true)
	waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second)
	waitEvent(t, a.accused, "OnAccused", "b", 2*time.Second)
	a.h.PauseSending(false)
	waitEvent(t, b.resume, "OnResume", "a", 2*time.Second)
}

// A node that was heard recently (it sent to this one for another reason)
// is Alive as soon as it is watched, and is lost on time from then on.
func TestNewlyWatchedHeardNodeStartsAlive(t *testing.T) {
	patient := func(c *Config) { c.Misses = 10 } // 400 ms: SetWatched comes well within it
	a, b := startNode(t, "a", patient), startNode(t, "b", patient)
	a.h.SetTargets(peers(b))
	received(t, b, 0)
	b.h.SetWatched(peers(a))
	if st, _ := stateOf(b, "a"); st != Alive {
		t.Fatalf("state %v right after SetWatched, want alive", st)
	}
	paused := time.Now()
	a.h.PauseSending(true)
	lost := waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second).Sub(paused)
	t.Logf("lost after %v (timeout 400ms)", lost.Round(time.Millisecond))
	if lost > 900*time.Millisecond {
		t.Errorf("lost after %v, want < 900ms (the receiver did not pick up the new deadline)", lost)
	}
}

// The heir's view can be ahead of the owner's (a gossip round behind):
// the owner has no targets yet, but the heir's watch requests make it send.
func TestWatcherAheadOfItsOwnerGetsHeartbeats(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	b.h.SetWatched(peers(a)) // a has no targets
	waitState(t, b, "a", Alive, 2*time.Second)
	if s := a.h.Stats(); s.SentBeats == 0 {
		t.Fatalf("a sent no heartbeat: %+v", s)
	}
	a.h.PauseSending(true)
	waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second)
	a.h.PauseSending(false)
	waitEvent(t, b.resume, "OnResume", "a", 2*time.Second)
}

// A watched node that never answered is never declared lost: it may run
// without the heartbeat (an older build, a firewalled port) and memberlist
// decides about it.
func TestNeverHeardNodeIsNotLost(t *testing.T) {
	silent, silentAddr := listen(t) // a socket that reads nothing
	defer silent.Close()
	b := startNode(t, "b")
	b.h.SetWatched(map[string]netip.AddrPort{"silent": silentAddr})
	// Ten watch requests, one per interval: ten intervals passed, more
	// than three times the loss timeout.
	eventually(t, 5*time.Second, "watch requests", func() error {
		if s := b.h.Stats(); s.SentWatch < 10 {
			return fmt.Errorf("%d watch requests", s.SentWatch)
		}
		return nil
	})
	if st, _ := stateOf(b, "silent"); st != Pending {
		t.Errorf("state %v, want pending", st)
	}
	if s := b.h.Stats(); s.Losses != 0 {
		t.Errorf("%d losses, want 0", s.Losses)
	}
}

// A Heart with another key, or of another cluster, is ignored (counted)
// and never keeps a silent owner alive, even under the owner's name.
func TestForeignHeartbeatsAreIgnoredAndNeverSuppressLoss(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	impostor := startNode(t, "a", withKeys(key2))
	other := startNode(t, "a", withCluster("other"))
	a.h.SetTargets(peers(b))
	impostor.h.SetTargets(peers(b))
	other.h.SetTargets(peers(b))
	b.h.SetWatched(peers(a))
	waitState(t, b, "a", Alive, 2*time.Second)
	a.h.PauseSending(true)
	lost := waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second)
	t.Logf("lost despite %d undecryptable datagrams", b.h.Stats().Rejected[RejectDecrypt])
	eventually(t, 2*time.Second, "more foreign datagrams rejected", func() error {
		if got := b.h.Stats().Rejected[RejectDecrypt]; got < 10 {
			return fmt.Errorf("%d rejected", got)
		}
		return nil
	})
	if st, _ := stateOf(b, "a"); st != Lost {
		t.Errorf("state %v after foreign datagrams, want lost", st)
	}
	select {
	case r := <-b.resume:
		t.Errorf("OnResume(%s) at %v, after the loss at %v: a foreign heartbeat counted", r.node, r.at, lost)
	default:
	}
}

// tap is a UDP socket that records what it receives.
type tap struct {
	conn *net.UDPConn
	addr netip.AddrPort
	got  chan []byte
	done chan struct{}
}

func startTap(t *testing.T) *tap {
	conn, addr := listen(t)
	tp := &tap{conn: conn, addr: addr, got: make(chan []byte, 1000), done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		buf := make([]byte, readBuffer)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case tp.got <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-tp.done })
	return tp
}

// capture returns n datagrams the tap received.
func (tp *tap) capture(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for len(out) < n {
		select {
		case b := <-tp.got:
			out = append(out, b)
		case <-timer.C:
			t.Fatalf("captured %d of %d datagrams", len(out), n)
		}
	}
	return out
}

// Datagrams replayed (by someone without the key, who cannot make new
// ones) are rejected, and do not keep a silent owner alive; nor do those of
// its previous boot once it restarted.
func TestReplayedDatagramsAreRejected(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	tp := startTap(t)
	// a sends every datagram to b and, as if copied off the wire, to the
	// tap: same boot and seq range.
	a.h.SetTargets(map[string]netip.AddrPort{"b": b.addr, "tap": tp.addr})
	b.h.SetWatched(peers(a))
	waitState(t, b, "a", Alive, 2*time.Second)
	captured := tp.capture(t, 10)
	// Replays are of datagrams older than what b accepted since.
	received(t, b, b.h.Stats().Received+1)
	replayer, _ := listen(t)
	defer replayer.Close()
	replay := func() {
		for _, d := range captured {
			if _, err := replayer.WriteTo(d, net.UDPAddrFromAddrPort(b.addr)); err != nil {
				t.Fatalf("replay: %v", err)
			}
		}
	}
	replay()
	eventually(t, 2*time.Second, "replays rejected", func() error {
		if got := b.h.Stats().Rejected[RejectReplay]; got < uint64(len(captured)) {
			return fmt.Errorf("%d replays rejected, want %d", got, len(captured))
		}
		return nil
	})

	// Silent owner, replays keep coming: still lost.
	a.h.PauseSending(true)
	stop := make(chan struct{})
	replays := make(chan struct{})
	go func() {
		defer close(replays)
		tick := time.NewTicker(DefaultInterval / 2)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, d := range captured {
					_, _ = replayer.WriteTo(d, net.UDPAddrFromAddrPort(b.addr))
				}
			}
		}
	}()
	waitEvent(t, b.loss, "OnLoss", "a", 5*time.Second)
	close(stop)
	<-replays

	// a restarts (a new boot under the same name): b takes the new boot
	// and refuses the old one's datagrams from then on.
	a.stop()
	a2 := startNode(t, "a")
	a2.h.SetTargets(peers(b))
	b.h.SetWatched(map[string]netip.AddrPort{"a": a2.addr})
	waitEvent(t, b.resume, "OnResume", "a", 5*time.Second)
	replay()
	eventually(t, 2*time.Second, "old boot rejected", func() error {
		if got := b.h.Stats().Rejected[RejectOldBoot]; got < uint64(len(captured)) {
			return fmt.Errorf("%d old-boot datagrams rejected, want %d", got, len(captured))
		}
		return nil
	})
}

// A rolling key rotation, one node at a time through the three passes,
// never loses a heartbeat's worth of trust: no loss, no decrypt failure.
func TestKeyRotationNeverCausesALoss(t *testing.T) {
	// A rotation that broke would show as decrypt failures, and as
	// silence beyond even a patient timeout.
	ns := []*node{startNode(t, "a", withPatience()), startNode(t, "b", withPatience()), startNode(t, "c", withPatience())}
	mesh(ns...)
	for _, n := range ns {
		for _, o := range ns {
			if o != n {
				waitState(t, n, o.name, Alive, 2*time.Second)
			}
		}
	}
	for _, pass := range [][][]byte{{key1, key2}, {key2, key1}, {key2}} {
		for _, n := range ns {
			if err := n.h.SetKeys(pass); err != nil {
				t.Fatalf("%s: SetKeys: %v", n.name, err)
			}
			// Every node hears from n under n's new keys, and n from
			// every node.
			changed := time.Now()
			for _, o := range ns {
				if o != n {
					heardSince(t, o, n.name, changed)
					heardSince(t, n, o.name, changed)
				}
			}
		}
	}
	for _, n := range ns {
		if s := n.h.Stats(); s.Losses != 0 || s.Rejected[RejectDecrypt] != 0 {
			t.Errorf("%s after rotation: %d losses, %d decrypt failures", n.name, s.Losses, s.Rejected[RejectDecrypt])
		}
	}
	// The old key alone no longer opens anything.
	stale := startNode(t, "stale", withKeys(key1))
	stale.h.SetTargets(peers(ns[0]))
	eventually(t, 2*time.Second, "old key rejected", func() error {
		if got := ns[0].h.Stats().Rejected[RejectDecrypt]; got == 0 {
			return errors.New("nothing rejected")
		}
		return nil
	})
}

// Garbage on the port is counted by kind, never trusted, never fatal.
func TestMalformedDatagramsAreCounted(t *testing.T) {
	b := startNode(t, "b")
	sender, _ := listen(t)
	defer sender.Close()
	kr := testKeyring(t, "test", key1)
	bad := func(f func([]byte) []byte) []byte {
		return f(kr.seal(nil, testHeader(1), testBeat))
	}
	hdr := testHeader(1)
	for _, d := range [][]byte{
		make([]byte, maxDatagram+1),
		{formatV1},
		bad(func(b []byte) []byte { b[0] = 9; return b }),
		bad(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		kr.seal(nil, hdr, beat{interval: DefaultInterval, node: "b"}),
	} {
		if _, err := sender.WriteTo(d, net.UDPAddrFromAddrPort(b.addr)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{RejectOversized: 1, RejectShort: 1, RejectFormat: 1, RejectDecrypt: 1, RejectSelf: 1}
	eventually(t, 2*time.Second, "rejects counted", func() error {
		got := b.h.Stats().Rejected
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("rejected %v, want %v", got, want)
			}
		}
		return nil
	})
}

func TestNewReportsEveryConfigError(t *testing.T) {
	_, err := New(Config{Keys: [][]byte{make([]byte, 7)}, Interval: time.Hour, Misses: -1, StaleAfter: -1})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"node name", "key 1 is 7 bytes", "no bind address", "interval", "misses", "stale-after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := New(Config{Node: "a", Bind: netip.MustParseAddrPort("127.0.0.1:0"), InsecurePlaintext: true}); err != nil {
		t.Errorf("plaintext config: %v", err)
	}
}

func TestAddrFor(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:7947":    "192.0.2.1:7948",
		"[2001:db8::1]:100": "[2001:db8::1]:101",
		"192.0.2.1:65535":   "invalid AddrPort",
		"192.0.2.1:0":       "invalid AddrPort",
	} {
		if got := AddrFor(netip.MustParseAddrPort(in)).String(); got != want {
			t.Errorf("AddrFor(%s) = %s, want %s", in, got, want)
		}
	}
}

// When the whole process stops (SIGSTOP from outside, as a paused VM stops
// every process on it), owners and heirs stall together: on waking, the
// heirs' deadlines have long passed, and no owner has sent yet. The
// receivers see that they overslept and wait one Interval for the round
// the owners owe, so nobody is declared lost. (Without that hold, 17
// losses in 40 such stalls were measured.)
func TestWholeProcessStallLosesNobody(t *testing.T) {
	ns := []*node{startNode(t, "s0"), startNode(t, "s1"), startNode(t, "s2")}
	mesh(ns...)
	for _, n := range ns {
		for _, o := range ns {
			if o != n {
				waitState(t, n, o.name, Alive, 2*time.Second)
			}
		}
	}
	pid := os.Getpid()
	for range 3 {
		stall := exec.Command("sh", "-c", fmt.Sprintf("kill -STOP %d; sleep 0.3; kill -CONT %d", pid, pid))
		if out, err := stall.CombinedOutput(); err != nil {
			t.Fatalf("stall: %v: %s", err, out)
		}
		resumed := time.Now()
		for _, n := range ns {
			for _, o := range ns {
				if o != n {
					heardSince(t, n, o.name, resumed)
				}
			}
		}
	}
	for _, n := range ns {
		if s := n.h.Stats(); s.Losses != 0 {
			t.Errorf("%s: %d losses after whole-process stalls", n.name, s.Losses)
		}
	}
}
