package gossip

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/memberlist"
	"pgregory.net/rapid"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{},
		{Gen: 1 << 62, Version: "v1.2.3", Labels: map[string]string{"rack": "a1", "zone": ""}, Health: HealthDraining, Leaving: true, AnnounceGen: 99, AnnounceCount: 3000},
		{Gen: 7, Labels: map[string]string{"rack": "a1"}},
		{Gen: 8, HeartbeatPort: 7948},
		{Gen: 9, HeartbeatPort: 65535, Leaving: true},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != formatV1 {
			t.Errorf("format byte %d", b[0])
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
		// Fields added later in format 1 go at the end: trailing bytes are
		// ignored.
		if got2, err := decodeMeta(append(b, 0xff, 0x01)); err != nil || !cmp.Equal(got, got2) {
			t.Errorf("with trailing bytes: %v %v", got2, err)
		}
		for i := range len(b) - 1 {
			if _, err := decodeMeta(b[:i]); err == nil && i < len(b)-1 {
				// Truncation before the labels' count must fail.
				if i < 6 {
					t.Errorf("truncated to %d bytes: no error", i)
				}
			}
		}
	}
	if _, err := decodeMeta([]byte{2, 0, 0}); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("format 2: %v", err)
	}
}

// The meta of earlier builds, which carried the names of the VIPs failing
// their health check after the labels, still decodes (the names are no
// longer read there), and this build keeps an empty list in their place so
// that such a build reads none.
func TestMetaRetiredUnhealthyList(t *testing.T) {
	m := Meta{Gen: 9, Version: "v", Labels: map[string]string{"rack": "a1"}, AnnounceGen: 8, AnnounceCount: 2}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte{0, 0}) {
		t.Fatalf("meta does not end with the retired empty list and heartbeat port 0: % x", b)
	}
	old := appendString(appendString(binary.AppendUvarint(slices.Clone(b[:len(b)-2]), 2), "api"), "web")
	got, err := decodeMeta(old)
	if err != nil || !cmp.Equal(got, m) {
		t.Errorf("an earlier build's meta: %+v, %v; want %+v", got, err, m)
	}
	// A list that its bytes cannot hold is corrupt.
	if _, err := decodeMeta(append(slices.Clone(b[:len(b)-2]), 0x7f)); err == nil {
		t.Error("a retired list of 127 names in 0 bytes: no error")
	}
}

// HeartbeatPort came after the retired list within format 1: meta that
// ends before it (every earlier build's) has no heartbeat, and a value
// that is no port is corrupt.
func TestMetaHeartbeatPort(t *testing.T) {
	m := Meta{Gen: 9, Version: "v", HeartbeatPort: 7948}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	withoutPort := Meta{Gen: 9, Version: "v"}
	old, err := encodeMeta(withoutPort)
	if err != nil {
		t.Fatal(err)
	}
	old = old[:len(old)-1] // an earlier build ended with the retired list
	if got, err := decodeMeta(old); err != nil || !cmp.Equal(got, withoutPort) {
		t.Errorf("an earlier build's meta: %+v, %v; want port 0", got, err)
	}
	if got, err := decodeMeta(b); err != nil || got.HeartbeatPort != 7948 {
		t.Errorf("port: %+v, %v", got, err)
	}
	if _, err := decodeMeta(binary.AppendUvarint(slices.Clone(old), 1<<16)); err == nil {
		t.Error("heartbeat port 65536: no error")
	}
}

func TestMetaTooLarge(t *testing.T) {
	labels := map[string]string{"k": strings.Repeat("v", memberlist.MetaMaxSize)}
	if _, err := encodeMeta(Meta{Labels: labels}); err == nil {
		t.Error("oversized meta: no error")
	}
	if _, err := New(Config{NodeName: "x", InsecurePlaintext: true, Transport: nil, Bind: netip.MustParseAddrPort("127.0.0.1:0"), Labels: labels}); err == nil {
		t.Error("New with oversized labels: no error")
	}
}

func genAddrs(t *rapid.T, label string) []netip.Addr {
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) netip.Addr {
		if rapid.Bool().Draw(t, "v6") {
			return netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "b16")))
		}
		return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "b4")))
	}), 0, 2500).Draw(t, label)
}

func genNames(t *rapid.T, label string) []string {
	return rapid.SliceOfN(rapid.StringMatching(`[a-z0-9._-]{1,63}`), 0, 600).Draw(t, label)
}

// Chunks fit a packet and reassemble, in any order, to the normalized set
// with its exclusions; a set without exclusions is encoded as before they
// existed, and every chunk's announced part reads the same to a decoder
// that stops there (one that predates the exclusions).
func TestChunksProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		set := announcedSet{gen: rapid.Uint64().Draw(t, "gen"), addrs: normalizeAddrs(genAddrs(t, "addrs"))}
		if rapid.Bool().Draw(t, "exclusions") {
			set.cannot = normalizeAddrs(genAddrs(t, "cannot"))
			set.unhealthy, _ = normalizeNames(genNames(t, "unhealthy"))
		}
		node := rapid.StringMatching(`[a-z0-9.-]{1,63}`).Draw(t, "node")
		msgs := encodeSet(node, set)
		order := rapid.Permutation(msgs).Draw(t, "order")
		a := &assembly{gen: set.gen, parts: make([]chunk, len(msgs))}
		var old []netip.Addr
		for _, m := range order {
			if len(m) > chunkBudget {
				t.Fatalf("chunk of %d bytes > budget %d", len(m), chunkBudget)
			}
			c, err := decodeChunk(m[2:])
			if err != nil {
				t.Fatal(err)
			}
			if c.node != node || c.gen != set.gen || c.total != len(msgs) {
				t.Fatalf("header %+v", c)
			}
			a.parts[c.idx] = c
			// What a decoder without the exclusions reads: the header and
			// the announced addresses, then trailing bytes.
			d := decoder{b: m[2:]}
			d.string()
			d.uvarint()
			d.count(maxChunks)
			d.count(maxChunks)
			pre := d.addrs(maxChunkAddrs)
			if d.err != nil || !slices.Equal(pre, c.addrs) {
				t.Fatalf("announced part: %v, %v; want %v", pre, d.err, c.addrs)
			}
			if len(set.cannot)+len(set.unhealthy) == 0 && len(d.b) != 0 {
				t.Fatalf("a set without exclusions has %d more bytes", len(d.b))
			}
			old = append(old, pre...)
		}
		got := a.set()
		if d := cmp.Diff(set, got, cmp.AllowUnexported(announcedSet{}), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Fatalf("reassembled (-want +got):\n%s", d)
		}
		if got := normalizeAddrs(old); !slices.Equal(got, set.addrs) {
			t.Fatalf("an older decoder reassembles %d addrs, want %d", len(got), len(set.addrs))
		}
	})
}

func TestStateProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sets := make(map[string]announcedSet)
		for i := range rapid.IntRange(0, 5).Draw(t, "nodes") {
			s := announcedSet{
				gen:   rapid.Uint64().Draw(t, "gen"),
				addrs: normalizeAddrs(genAddrs(t, "addrs")),
			}
			if rapid.Bool().Draw(t, "exclusions") {
				s.cannot = normalizeAddrs(genAddrs(t, "cannot"))
				s.unhealthy, _ = normalizeNames(genNames(t, "unhealthy"))
			}
			sets[string(rune('a'+i))] = s
		}
		got, err := decodeState(encodeState(sets))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(sets, got, cmp.AllowUnexported(announcedSet{}), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Fatalf("state round trip:\n%s", d)
		}
	})
}

func TestNormalizeAddrs(t *testing.T) {
	in := []netip.Addr{
		netip.MustParseAddr("192.0.2.2"), {}, netip.MustParseAddr("::ffff:192.0.2.1"),
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("192.0.2.2"),
	}
	want := addrs("192.0.2.1", "192.0.2.2", "fe80::1")
	if got := normalizeAddrs(in); !slices.Equal(got, want) {
		t.Errorf("normalizeAddrs = %v, want %v", got, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	b, _ := encodeMeta(Meta{Gen: 5, Version: "v", Labels: map[string]string{"a": "b"}})
	f.Add(b)
	f.Add(append(b, make([]byte, memberlist.MetaMaxSize)...))
	f.Add([]byte{formatV1, 1, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			m   Meta
			err error
		)
		checkAlloc(t, "decodeMeta", b, func() { m, err = decodeMeta(b) })
		if err != nil {
			return
		}
		// Oversized metadata is never decoded; counts fit the bytes.
		if len(b) > memberlist.MetaMaxSize {
			t.Fatalf("decoded %d bytes of metadata, over %d", len(b), memberlist.MetaMaxSize)
		}
		if len(m.Labels) > len(b)/minLabelSize {
			t.Fatalf("%d labels from %d bytes", len(m.Labels), len(b))
		}
		// What decodes re-encodes to something that decodes the same
		// (unless the labels were duplicated or it is over the limit).
		b2, err := encodeMeta(m)
		if err != nil {
			return
		}
		m2, err := decodeMeta(b2)
		if err != nil || !cmp.Equal(m, m2) {
			t.Fatalf("re-decode: %v %v vs %v", err, m, m2)
		}
	})
}

func FuzzDecodeGossip(f *testing.F) {
	for _, m := range encodeChunks("n1", 7, addrs("192.0.2.1", "2001:db8::1")) {
		f.Add(m)
	}
	f.Add(encodeState(map[string]announcedSet{"n1": {gen: 3, addrs: addrs("192.0.2.1")}}))
	f.Add(encodeDigest(digest{gen: 9, announceGen: 8}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := decodeDigest(b); err == nil {
			if d2, err := decodeDigest(encodeDigest(d)); err != nil || d2 != d {
				t.Fatalf("digest re-decode: %+v, %v vs %+v", d2, err, d)
			}
		}
		if len(b) >= 2 && b[1] == kindChunk {
			if c, err := decodeChunk(b[2:]); err == nil && (c.idx >= c.total || c.node == "") {
				t.Fatalf("accepted a bad chunk %+v", c)
			}
		}
		_, _ = decodeState(b)
	})
}

func TestParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5\n", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Suspect n3 has failed, no acks received\n", slog.LevelInfo, "Suspect n3 has failed, no acks received"},
		{"[WARN] memberlist: Refuting a suspect message (from: n4)\n", slog.LevelWarn, "Refuting a suspect message (from: n4)"},
		{"[ERR] memberlist: Failed fallback TCP ping: x\n", slog.LevelError, "Failed fallback TCP ping: x"},
		{"[ERROR] memberlist: y", slog.LevelError, "y"},
		{"[TRACE] memberlist: z", LevelTrace, "z"},
		{"no level at all", slog.LevelInfo, "no level at all"},
		{"[ODD] memberlist: w", slog.LevelInfo, "[ODD] memberlist: w"},
	} {
		level, msg := parseLogLine(tc.in)
		if level != tc.level || msg != tc.msg {
			t.Errorf("parseLogLine(%q) = %v %q, want %v %q", tc.in, level, msg, tc.level, tc.msg)
		}
	}
}

func TestLogBridge(t *testing.T) {
	var sb strings.Builder
	l, w := newStdLogger(slog.New(slog.NewTextHandler(&sb, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[DEBUG] memberlist: hidden")
	l.Printf("[WARN] memberlist: shown %d", 1)
	w.Close()
	l.Printf("[ERR] memberlist: after close")
	out := sb.String()
	if strings.Contains(out, "after close") {
		t.Errorf("logged after Close:\n%s", out)
	}
	if strings.Contains(out, "hidden") || !strings.Contains(out, `level=WARN msg="shown 1" component=memberlist`) {
		t.Errorf("bridged output:\n%s", out)
	}
}

func TestEventUrgent(t *testing.T) {
	base := Meta{Gen: 10, Version: "1", Labels: map[string]string{"a": "b"}, Health: HealthOK,
		AnnounceGen: 9, AnnounceCount: 3}
	for _, tc := range []struct {
		name    string
		mut     func(*Meta)
		setOnly bool
	}{
		{"the announced set's generation and count", func(m *Meta) { m.Gen, m.AnnounceGen, m.AnnounceCount = 11, 11, 4 }, true},
		{"health", func(m *Meta) { m.Gen, m.Health = 11, HealthDraining }, false},
		{"leaving", func(m *Meta) { m.Gen, m.Leaving = 11, true }, false},
		{"labels", func(m *Meta) { m.Gen, m.Labels = 11, map[string]string{"a": "c"} }, false},
		{"version", func(m *Meta) { m.Gen, m.Version = 11, "2" }, false},
	} {
		next := base
		next.Labels = maps.Clone(base.Labels)
		tc.mut(&next)
		if got := setOnly(base, next); got != tc.setOnly {
			t.Errorf("%s: setOnly = %v, want %v", tc.name, got, tc.setOnly)
		}
		ev := Event{Kind: EventUpdate, SetOnly: setOnly(base, next)}
		if ev.Urgent() == tc.setOnly {
			t.Errorf("%s: Urgent = %v", tc.name, ev.Urgent())
		}
	}
	for k, urgent := range map[EventKind]bool{EventJoin: true, EventLeave: true, EventDead: true, EventAnnounced: false} {
		if got := (Event{Kind: k}).Urgent(); got != urgent {
			t.Errorf("%s: Urgent = %v, want %v", k, got, urgent)
		}
	}
	// A set that comes with other exclusions changes who may take which
	// IP: as urgent as a change of health.
	if !(Event{Kind: EventAnnounced, Exclusions: true}).Urgent() {
		t.Error("announced set with new exclusions: not urgent")
	}
}

func TestDetectionBound(t *testing.T) {
	for _, c := range []struct {
		profile string
		n       int
		want    time.Duration
	}{
		{ProfileFast, 3, 900 * time.Millisecond},
		{ProfileFast, 10, 900 * time.Millisecond},
		{"", 0, 900 * time.Millisecond},
		{"nope", 3, 0},
	} {
		if got := DetectionBound(c.profile, c.n); got != c.want {
			t.Errorf("DetectionBound(%q, %d) = %v, want %v", c.profile, c.n, got, c.want)
		}
	}
	if got := DetectionBound(ProfileFast, 20); got < 1050*time.Millisecond || got > 1100*time.Millisecond {
		t.Errorf("fast, 20 members: %v, want ≈ 1.08 s", got)
	}
	if DetectionBound(ProfileLAN, 3) <= DetectionBound(ProfileFast, 3) {
		t.Error("lan is not slower than fast")
	}
}
