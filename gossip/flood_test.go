package gossip

import (
	"crypto/rand"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostlb/hostlb/gossip/gossiptest"
)

// fakeClock is a settable clock for dropLog.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// bridge returns memberlist's logger bridged to a lineCounter, with a
// fake clock and an interval that the real timer never reaches in a test.
func bridge(t *testing.T) (func(string, ...any), *logWriter, *lineCounter, *fakeClock) {
	var lines lineCounter
	clock := &fakeClock{}
	clock.t.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l, w := newStdLogger(slog.New(&lines))
	w.drops.now = clock.now
	w.drops.interval = time.Hour
	t.Cleanup(w.Close)
	return l.Printf, w, &lines, clock
}

// Repeated decrypt failures from ever-changing peers are one line, then one
// summary per interval with the count; counters keep every one.
func TestLogBridgeAggregatesInputErrors(t *testing.T) {
	printf, w, lines, clock := bridge(t)
	for i := range 1000 {
		printf("[ERR] memberlist: Decrypt packet failed: No installed keys could decrypt the message from=192.0.2.%d:%d", i%250, 1024+i)
		printf("[ERR] memberlist: msg type (%d) not supported from=[2001:db8::%x]:7947", i%200+20, i)
	}
	if got := len(lines.atLeast(slog.LevelError)); got != 2 {
		t.Fatalf("%d error lines for 2,000 bad packets, want 2 (the first of each kind)", got)
	}
	clock.advance(time.Hour)
	w.drops.fire()
	if got := lines.count("repeated gossip log lines aggregated"); got != 2 {
		t.Fatalf("%d summaries after the interval, want 2", got)
	}
	for _, r := range lines.atLeast(slog.LevelError) {
		if r.Message != "repeated gossip log lines aggregated" {
			continue
		}
		var kind string
		var count uint64
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "kind":
				kind = a.Value.String()
			case "count":
				count = a.Value.Uint64()
			}
			return true
		})
		if count != 999 || (kind != InputDecrypt && kind != InputUnknownType) {
			t.Errorf("summary kind %q count %d, want 999 of decrypt or unknown-type", kind, count)
		}
	}
	// Nothing held back: the next interval logs nothing until a line comes.
	clock.advance(time.Hour)
	w.drops.fire()
	printf("[ERR] memberlist: Decrypt packet failed: x from=198.51.100.1:1")
	if got := len(lines.atLeast(slog.LevelError)); got != 5 {
		t.Errorf("%d error lines, want 5 (2 first, 2 summaries, 1 after the quiet interval)", got)
	}
	want := map[string]uint64{InputDecrypt: 1001, InputUnknownType: 1000}
	if got := w.drops.counts(); !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	// Close logs what is held back.
	printf("[ERR] memberlist: Decrypt packet failed: y from=198.51.100.2:2")
	w.Close()
	if got := lines.count("repeated gossip log lines aggregated"); got != 3 {
		t.Errorf("%d summaries after Close, want 3", got)
	}
}

// Lines that explain a failover are never aggregated, at any level.
func TestLogBridgeNeverAggregatesFailoverLines(t *testing.T) {
	printf, _, lines, _ := bridge(t)
	for i := range 300 {
		printf("[WARN] memberlist: Refuting a suspect message (from: n%d)", i)
		printf("[INFO] memberlist: Suspect n%d has failed, no acks received", i)
		printf("[INFO] memberlist: Marking n%d as failed, suspect timeout reached (0 peer confirmations)", i)
		printf("[ERR] memberlist: Failed fallback TCP ping: io: read/write on closed pipe")
	}
	for _, p := range []string{"Refuting", "Suspect", "Marking", "Failed fallback TCP ping"} {
		if got := lines.count(p); got != 300 {
			t.Errorf("%d %q lines of 300", got, p)
		}
	}
}

// Other repeated warnings aggregate by their text without numbers and
// addresses: the same error about many peers is one line, different errors
// are not merged.
func TestLogBridgeAggregatesOtherErrorsByText(t *testing.T) {
	printf, w, lines, _ := bridge(t)
	for i := range 50 {
		printf("[ERR] memberlist: Push/Pull with n%d failed: dial tcp 192.0.2.%d:7947: i/o timeout", i, i)
		printf("[ERR] memberlist: Failed to send gossip to 192.0.2.%d:7947: write: no buffer space", i)
	}
	if got := len(lines.atLeast(slog.LevelError)); got != 2 {
		t.Errorf("%d lines for 2 repeated errors, want 2", got)
	}
	if got := w.drops.counts()[InputOther]; got != 100 {
		t.Errorf("counts[other] = %d, want 100", got)
	}
	// A forger varying the text cannot grow the table without bound.
	for i := range 10 * maxDropKeys {
		printf("[WARN] memberlist: ignoring alive message for 'x%s': bad", strings.Repeat("y", i%1000+1))
	}
	w.drops.mu.Lock()
	keys := len(w.drops.keys)
	w.drops.mu.Unlock()
	if keys > maxDropKeys+1 {
		t.Errorf("%d aggregation keys, want ≤ %d", keys, maxDropKeys+1)
	}
}

func TestNormalizeLine(t *testing.T) {
	for in, want := range map[string]string{
		"Decrypt packet failed: bad from=192.0.2.1:7947":              "Decrypt packet failed: bad from=#",
		"msg type (23) not supported from=[2001:db8::1]:7947":         "msg type (#) not supported from=#",
		"Got invalid checksum for UDP packet: 1a2b3c4d, deadbeef":     "Got invalid checksum for UDP packet: #, deadbeef",
		"Push/Pull with n12 failed: dial tcp 198.51.100.7:80: failed": "Push/Pull with n# failed: dial tcp # failed",
	} {
		if got := normalizeLine(in); got != want {
			t.Errorf("normalizeLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClassifyLine(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		msg   string
		kind  string
	}{
		{slog.LevelError, "Decrypt packet failed: No installed keys could decrypt the message from=192.0.2.1:1", InputDecrypt},
		{slog.LevelError, "failed to receive: Unable to decrypt the stream from=192.0.2.1:1", InputDecrypt},
		{slog.LevelError, "msg type (99) not supported from=192.0.2.1:1", InputUnknownType},
		{slog.LevelError, "Received invalid msgType (99) from=192.0.2.1:1", InputUnknownType},
		{slog.LevelError, "discarding packet with unacceptable label \"x\": from=192.0.2.1:1", InputLabel},
		{slog.LevelError, "Failed to decode ping request: EOF from=192.0.2.1:1", InputMalformed},
		{slog.LevelError, "UDP packet too short (0 bytes) from=192.0.2.1:1", InputMalformed},
		{slog.LevelWarn, "handler queue full, dropping message (4) from=192.0.2.1:1", InputQueueFull},
		{slog.LevelWarn, "Refuting a suspect message (from: n4)", ""},
		{slog.LevelInfo, "Suspect n3 has failed, no acks received", ""},
		{slog.LevelDebug, "Stream connection from=192.0.2.1:1", ""},
		{slog.LevelError, "Push/Pull with n3 failed: EOF", InputOther},
	} {
		if kind, _ := classifyLine(tc.level, tc.msg); kind != tc.kind {
			t.Errorf("classifyLine(%v, %q) = %q, want %q", tc.level, tc.msg, kind, tc.kind)
		}
	}
}

// garbage returns n bytes that look like an encrypted memberlist packet
// (version byte 1, then random nonce, ciphertext and tag).
func garbage(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	b[0] = 1
	return b
}

// 100,000 garbage UDP packets to a ring on 127.0.0.1 give a bounded
// number of log lines; every one is counted.
func TestGarbageFloodOverUDPIsAggregated(t *testing.T) {
	const packets, batch = 100_000, 50
	var lines lineCounter
	cfg := loopback(testKey, false)
	cfg.Logger = slog.New(&lines)
	n1 := startNode(t, "n1", cfg)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(n1.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	decrypted := func() uint64 { return n1.ring.InputErrors()[InputDecrypt] }
	pkt := garbage(64)
	start := time.Now()
	for sent := 0; sent < packets; {
		for range batch {
			pkt[1+sent%60]++ // every packet differs
			if _, err := conn.Write(pkt); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		// Pace the flood by what the ring has read, so that the socket
		// buffer (208 KiB by default, a few hundred packets) rarely
		// overflows; if the kernel drops some, go on after a while.
		waitUntil(200*time.Millisecond, func() bool { return decrypted() >= uint64(sent-batch) })
	}
	waitUntil(time.Second, func() bool { return decrypted() >= packets-batch })
	took := time.Since(start)
	got := decrypted()
	if got < packets/2 {
		t.Errorf("only %d of %d garbage packets reached the ring", got, packets)
	}
	errLines := lines.atLeast(slog.LevelWarn)
	t.Logf("%d garbage packets in %v: %d counted as decrypt failures, %d warning/error lines", packets, took.Round(time.Millisecond), got, len(errLines))
	// The first line, then one summary per started interval.
	if limit := 2 + int(took/dropLogInterval); len(errLines) > limit {
		var msgs []string
		for _, r := range errLines[:min(10, len(errLines))] {
			msgs = append(msgs, r.Message)
		}
		t.Errorf("%d warning/error lines for %d garbage packets, want ≤ %d; first: %q", len(errLines), packets, limit, msgs)
	}
	// The first decrypt line is logged in full, and again once per interval
	// the flood outlasts (the line after a summary starts a new interval).
	if n, limit := lines.count("Decrypt packet failed"), 1+int(took/dropLogInterval); n < 1 || n > limit {
		t.Errorf("%d decrypt lines in %v, want 1 to %d", n, took.Round(time.Millisecond), limit)
	}
}

// waitUntil polls cond until it holds or within passes, and reports
// whether it held.
func waitUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// pollUntil polls cond until it holds or within passes.
func pollUntil(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(time.Millisecond)
	}
}

// A flood of garbage packets at the survivors does not delay failover: a
// crashed member is declared dead within the fast profile's bound (as in
// TestRingCrashDetectedWithinFastBound) while 100,000 packets arrive, and
// the lines that explain the failover are logged while those about the
// garbage are aggregated.
func TestGarbageFloodDoesNotDelayFailover(t *testing.T) {
	const packets, burst = 100_000, 200
	var lines lineCounter
	c := newCluster(t, 5, func(cfg *Config) { cfg.Logger = slog.New(&lines) })
	eventually(t, 3*time.Second, "all join", func() error { return seesAlive(c.nodes, c.names(c.nodes)) })
	victim := c.nodes[2]
	others := slices.Delete(slices.Clone(c.nodes), 2, 3)
	attacker, err := c.net.NewTransport(memAddr(66))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = attacker.Shutdown() }()
	// received reports whether every packet sent to o was read by its ring
	// or dropped by its full queue (the flood may crowd out real packets
	// too, as on a real link).
	sent := make([]uint64, len(others))
	received := func(i int) bool {
		o := others[i]
		return o.ring.InputErrors()[InputDecrypt]+o.ring.cfg.Transport.(*gossiptest.Transport).Dropped() >= sent[i]
	}
	var killedAt time.Time
	var dead time.Duration
	pkt := garbage(64)
	for total := 0; total < packets; {
		for i, o := range others {
			for range burst {
				pkt[1+total%60]++
				if _, err := attacker.WriteTo(pkt, o.addr.String()); err != nil {
					t.Fatal(err)
				}
				sent[i]++
				total++
			}
		}
		for i := range others {
			pollUntil(t, 5*time.Second, func() bool { return received(i) })
		}
		if killedAt.IsZero() && total >= packets/4 {
			c.net.Kill(victim.addr)
			killedAt = time.Now()
		}
		if !killedAt.IsZero() && dead == 0 && seesState(others, victim.name, StateDead) == nil {
			dead = time.Since(killedAt)
		}
	}
	if dead == 0 {
		eventually(t, max(0, 3*time.Second-time.Since(killedAt)), "crash detected during the flood", func() error {
			return seesState(others, victim.name, StateDead)
		})
		dead = time.Since(killedAt)
	}
	t.Logf("%s declared dead by all %d others %v after its crash, during a flood of %d garbage packets", victim.name, len(others), dead.Round(time.Millisecond), packets)
	if dead > 3*time.Second {
		t.Errorf("crash detected after %v during the flood, want ≤ 3s", dead)
	}
	var counted uint64
	for _, o := range others {
		counted += o.ring.InputErrors()[InputDecrypt]
	}
	if counted < packets/2 {
		t.Errorf("%d of %d garbage packets counted", counted, packets)
	}
	if got := lines.count("Decrypt packet failed"); got > len(others) {
		t.Errorf("%d decrypt lines, want at most one per node (%d)", got, len(others))
	}
	if got := lines.count("Suspect " + victim.name); got == 0 {
		t.Errorf("no line says %s is suspect: failover lines suppressed?", victim.name)
	}
}
