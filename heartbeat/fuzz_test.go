package heartbeat

import (
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the decoders of received datagrams:
// as a whole datagram (header checks and opening), and as a payload, both
// directly and sealed with the test key so that the payload decoder runs
// behind a valid tag. Nothing may panic; what decodes must encode back to
// an equal beat; a datagram that opens must fit maxDatagram. `make
// fuzz-short` runs it; `go test` runs the seeds.
func FuzzDecode(f *testing.F) {
	kr := testKeyring(f, "test", key1)
	for _, m := range []beat{
		testBeat,
		{flags: flagWatching | flagLost, interval: maxInterval, sent: 1 << 61, node: strings.Repeat("x", maxNameLen)},
		{interval: time.Microsecond, node: "n"},
	} {
		f.Add(kr.seal(nil, testHeader(1), m))
		f.Add(appendPayload(nil, m))
	}
	f.Add([]byte{formatV1})
	f.Add(make([]byte, minDatagram))
	f.Add(make([]byte, maxDatagram+1))
	f.Add(append([]byte{formatV1 + 1}, make([]byte, minDatagram)...))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, m, err := kr.open(b); err == nil {
			checkBeat(t, m)
			if h.format != formatV1 || len(b) > maxDatagram {
				t.Fatalf("opened a bad datagram: %+v, %d bytes", h, len(b))
			}
		}
		m, err := decodePayload(b)
		if err == nil {
			checkBeat(t, m)
			again, err := decodePayload(appendPayload(nil, m))
			if err != nil || again != m {
				t.Fatalf("re-encoded %+v decodes to %+v, %v", m, again, err)
			}
		}
		// The same bytes as a payload behind a valid tag.
		h := testHeader(7)
		d := h.append(nil)
		n := nonce(h.seq)
		d = kr.aead(h.boot, 0, false).Seal(d, n[:], b, kr.additional(nil, d))
		_, sealed, serr := kr.open(d)
		switch {
		case len(d) > maxDatagram:
			if serr == nil {
				t.Fatalf("opened a %d-byte datagram", len(d))
			}
		case (serr == nil) != (err == nil):
			t.Fatalf("payload decodes (%v) but sealed it opens (%v), or the reverse", err, serr)
		case serr == nil && sealed != m:
			t.Fatalf("sealed payload opened to %+v, decoded %+v", sealed, m)
		}
	})
}

func checkBeat(t *testing.T, m beat) {
	t.Helper()
	if m.node == "" || len(m.node) > maxNameLen || m.interval <= 0 || m.interval > maxInterval ||
		m.interval%time.Microsecond != 0 || m.sent < 0 || m.sent > maxSent {
		t.Fatalf("accepted a bad beat %+v", m)
	}
}
