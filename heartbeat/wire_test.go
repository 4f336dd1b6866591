package heartbeat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testKeyring(t testing.TB, label string, keys ...[]byte) *keyring {
	t.Helper()
	kr, err := newKeyring(keys, label)
	if err != nil {
		t.Fatalf("newKeyring: %v", err)
	}
	return kr
}

func testHeader(seq uint64) header {
	h := header{format: formatV1, seq: seq}
	copy(h.boot[:], "boot-0123456789a")
	return h
}

var testBeat = beat{flags: flagWatching, interval: 40 * time.Millisecond, sent: 1234567 * time.Microsecond, node: "node-a"}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, size := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{7}, size)
		kr := testKeyring(t, "prod", key)
		for _, m := range []beat{testBeat, {flags: flagLost, interval: time.Microsecond, node: strings.Repeat("n", maxNameLen)}} {
			b := kr.seal(nil, testHeader(42), m)
			if len(b) > maxDatagram {
				t.Fatalf("%d-byte datagram, more than %d", len(b), maxDatagram)
			}
			h, got, err := kr.open(b)
			if err != nil {
				t.Fatalf("AES-%d: open: %v", size*8, err)
			}
			if h != testHeader(42) || got != m {
				t.Fatalf("AES-%d: got %+v %+v, want %+v %+v", size*8, h, got, testHeader(42), m)
			}
		}
	}
}

// Every key opens, the first seals: the keyring semantics of the ring.
func TestAnyKeyOpensTheFirstSeals(t *testing.T) {
	old, both, next := testKeyring(t, "", key1), testKeyring(t, "", key1, key2), testKeyring(t, "", key2, key1)
	for _, tt := range []struct {
		name       string
		seal, open *keyring
		ok         bool
	}{
		{"old to both", old, both, true},
		{"both to old", both, old, true},
		{"next to both", next, both, true},
		{"next to old", next, old, false},
		{"old to next", old, next, true},
	} {
		_, _, err := tt.open.open(tt.seal.seal(nil, testHeader(1), testBeat))
		if (err == nil) != tt.ok {
			t.Errorf("%s: open error %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	kr := testKeyring(t, "prod", key1)
	good := kr.seal(nil, testHeader(9), testBeat)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x80
		return b
	}
	// A payload that authenticates but does not decode.
	sealRaw := func(payload []byte) []byte {
		h := testHeader(9)
		b := h.append(nil)
		n := nonce(h.seq)
		return kr.aead(h.boot, 0, false).Seal(b, n[:], payload, kr.additional(nil, b))
	}
	valid := appendPayload(nil, testBeat)
	zeroInterval := bytes.Clone(valid)
	copy(zeroInterval[1:5], []byte{0, 0, 0, 0})
	emptyName := bytes.Clone(valid[:minPayload])
	emptyName[13] = 0
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShort},
		{"short", good[:minDatagram-1], errShort},
		{"oversized", append(bytes.Clone(good), make([]byte, maxDatagram)...), errOversized},
		{"unknown format", flip(0), errFormat},
		{"boot changed", flip(1), errDecrypt},
		{"seq changed", flip(headerLen - 1), errDecrypt},
		{"payload changed", flip(headerLen + 3), errDecrypt},
		{"tag changed", flip(len(good) - 1), errDecrypt},
		{"truncated", good[:len(good)-1], errDecrypt},
		{"another key", testKeyring(t, "prod", key2).seal(nil, testHeader(9), testBeat), errDecrypt},
		{"another cluster", testKeyring(t, "staging", key1).seal(nil, testHeader(9), testBeat), errDecrypt},
		{"no label vs a label", testKeyring(t, "", key1).seal(nil, testHeader(9), testBeat), errDecrypt},
		{"zero interval", sealRaw(zeroInterval), errPayload},
		{"empty name", sealRaw(emptyName), errPayload},
		{"name longer than the payload", sealRaw(valid[:len(valid)-1]), errPayload},
	} {
		_, _, err := kr.open(tt.b)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
	// Bytes after the name are room for later fields.
	if _, m, err := kr.open(sealRaw(append(bytes.Clone(valid), 1, 2, 3))); err != nil || m != testBeat {
		t.Errorf("trailing bytes: %+v, %v; want %+v", m, err, testBeat)
	}
}

func TestEachBootSealsWithItsOwnKey(t *testing.T) {
	kr := testKeyring(t, "", key1)
	a, b := testHeader(1), testHeader(1)
	b.boot[15] ^= 1
	da, db := kr.seal(nil, a, testBeat), kr.seal(nil, b, testBeat)
	if bytes.Equal(da[headerLen:], db[headerLen:]) {
		t.Fatal("two boots sealed the same payload with the same seq to the same bytes: same key and nonce")
	}
	// The boot is bound to its key: moving a sealed payload to another
	// boot's header does not open.
	moved := append(b.append(nil), da[headerLen:]...)
	if _, _, err := kr.open(moved); !errors.Is(err, errDecrypt) {
		t.Fatalf("payload moved to another boot: %v, want a decrypt failure", err)
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	for _, keys := range [][][]byte{nil, {make([]byte, 31)}, {key1, make([]byte, 8)}} {
		if _, err := newKeyring(keys, ""); err == nil {
			t.Errorf("newKeyring(%d keys) accepted", len(keys))
		}
	}
}
