package heartbeat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The datagram (doc.go has the whole picture):
//
//	header, in clear, authenticated:
//	  format    1   formatV1
//	  boot     16   the sender's boot ID: start wall clock (8, ns) ‖ 8 random bytes
//	  seq       8   big endian, 1, 2, 3 … per datagram within the boot
//	AES-GCM sealed payload, with the 16-byte tag:
//	  flags     1   flagWatching | flagLost; other bits ignored
//	  interval  4   the sender's send interval, µs, 1..maxInterval
//	  sent      8   the sender's monotonic clock, ns since its boot, < 2^62
//	  namelen   1   1..255
//	  name          the sender's node name
//	  (bytes after the name are ignored: room for later fields)
//
// The key is derived per boot from the ring key; the nonce is 4 zero bytes
// ‖ seq; the additional data is the header ‖ the cluster label.
const (
	formatV1 byte = 1

	bootLen     = 16
	headerLen   = 1 + bootLen + 8
	tagLen      = 16
	minPayload  = 1 + 4 + 8 + 1 + 1
	maxNameLen  = 255
	maxPayload  = minPayload - 1 + maxNameLen
	minDatagram = headerLen + minPayload + tagLen
	maxDatagram = 512 // larger datagrams are rejected unread
	nonceSize   = 12
	maxInterval = 10 * time.Second
	// maxSent bounds the sender's clock (146 years) so that differences
	// of two such clocks never overflow.
	maxSent      = 1<<62 - 1
	keyDerivInfo = "hostlb heartbeat v1\x00"
)

// Flags of a datagram.
const (
	// flagWatching: the sender is heir to one of the receiver's IPs and
	// asks for the receiver's heartbeats.
	flagWatching byte = 1 << 0
	// flagLost: the sender has declared the receiver lost (and may have
	// taken over its IPs).
	flagLost byte = 1 << 1
)

// Decoding errors; the receiver counts them by kind (Reject*).
var (
	errShort     = errors.New("datagram too short")
	errOversized = errors.New("datagram too long")
	errFormat    = errors.New("unknown format")
	errDecrypt   = errors.New("no key decrypts the datagram")
	errPayload   = errors.New("malformed payload")
)

type bootID [bootLen]byte

// header is the clear part of a datagram.
type header struct {
	format byte
	boot   bootID
	seq    uint64
}

func (h header) append(b []byte) []byte {
	b = append(b, h.format)
	b = append(b, h.boot[:]...)
	return binary.BigEndian.AppendUint64(b, h.seq)
}

// parseHeader reads the header of a datagram and returns it with the sealed
// rest. It checks the size bounds and the format, nothing else.
func parseHeader(b []byte) (header, []byte, error) {
	if len(b) > maxDatagram {
		return header{}, nil, errOversized
	}
	if len(b) < minDatagram {
		return header{}, nil, errShort
	}
	h := header{format: b[0]}
	if h.format != formatV1 {
		return header{}, nil, fmt.Errorf("%w %d", errFormat, h.format)
	}
	copy(h.boot[:], b[1:1+bootLen])
	h.seq = binary.BigEndian.Uint64(b[1+bootLen : headerLen])
	return h, b[headerLen:], nil
}

// beat is the sealed payload of a datagram.
type beat struct {
	flags    byte
	interval time.Duration // whole microseconds on the wire
	sent     time.Duration // the sender's clock since its boot
	node     string
}

func appendPayload(b []byte, m beat) []byte {
	b = append(b, m.flags)
	b = binary.BigEndian.AppendUint32(b, uint32(m.interval/time.Microsecond))
	b = binary.BigEndian.AppendUint64(b, uint64(m.sent))
	b = append(b, byte(len(m.node)))
	return append(b, m.node...)
}

// decodePayload reads a payload. It allocates only the name.
func decodePayload(b []byte) (beat, error) {
	if len(b) < minPayload {
		return beat{}, errPayload
	}
	m := beat{flags: b[0]}
	us := binary.BigEndian.Uint32(b[1:5])
	sent := binary.BigEndian.Uint64(b[5:13])
	n := int(b[13])
	if us == 0 || time.Duration(us)*time.Microsecond > maxInterval || sent > maxSent || n == 0 || len(b) < 14+n {
		return beat{}, errPayload
	}
	m.interval = time.Duration(us) * time.Microsecond
	m.sent = time.Duration(sent)
	m.node = string(b[14 : 14+n])
	return m, nil
}

// keyring seals with the first key and opens with any. It is immutable
// but for its cache of derived keys; SetKeys installs a new one.
//
// Every node shares the ring key and sends tens of datagrams a second to
// each target, so random 96-bit nonces under the ring key itself would
// approach the birthday bound within a year in a large cluster (2^43
// datagrams at 100 nodes give a collision with probability ≈ 2^-11, and
// one collision reveals GCM's authentication key). Instead each boot
// seals under its own key, HMAC-SHA256(ring key, keyDerivInfo ‖ boot)
// cut to the ring key's length, with seq as the nonce: a nonce never
// repeats under one key while seq only grows, and two boots share a key
// only if their 128-bit boot IDs collide. The derivation also separates
// the heartbeat from memberlist's use of the same key.
type keyring struct {
	keys  [][]byte // keys[0] seals
	label []byte

	mu    sync.Mutex // guards cache
	cache map[cacheKey]cipher.AEAD
}

type cacheKey struct {
	boot bootID
	key  int // index into keys
}

// maxCachedKeys bounds the derived keys a receiver keeps: one per boot of
// each peer it hears and ring key that opened it. Only keys that opened a
// datagram are cached, so forged boot IDs cost a derivation each, not memory.
const maxCachedKeys = 1024

func newKeyring(keys [][]byte, label string) (*keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	kr := &keyring{label: []byte(label), cache: map[cacheKey]cipher.AEAD{}}
	for i, k := range keys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("key %d is %d bytes, want 16, 24 or 32 (AES-128, -192, -256)", i+1, len(k))
		}
		kr.keys = append(kr.keys, append([]byte(nil), k...))
	}
	return kr, nil
}

// derive returns the AEAD of boot under ring key i.
func (kr *keyring) derive(boot bootID, i int) cipher.AEAD {
	mac := hmac.New(sha256.New, kr.keys[i])
	mac.Write([]byte(keyDerivInfo))
	mac.Write(boot[:])
	sum := mac.Sum(nil)
	block, err := aes.NewCipher(sum[:len(kr.keys[i])])
	if err != nil {
		panic(err) // unreachable: the length is one AES accepts
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: the standard nonce and tag sizes
	}
	return aead
}

// aead returns the (cached) AEAD of boot under ring key i; remember says
// whether to cache it when it is new.
func (kr *keyring) aead(boot bootID, i int, remember bool) cipher.AEAD {
	k := cacheKey{boot, i}
	kr.mu.Lock()
	a := kr.cache[k]
	kr.mu.Unlock()
	if a != nil {
		return a
	}
	a = kr.derive(boot, i)
	if remember {
		kr.remember(k, a)
	}
	return a
}

func (kr *keyring) remember(k cacheKey, a cipher.AEAD) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if len(kr.cache) >= maxCachedKeys {
		clear(kr.cache) // rare (a thousand boots); re-derived on demand
	}
	kr.cache[k] = a
}

func nonce(seq uint64) [nonceSize]byte {
	var n [nonceSize]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

// additional returns the additional data of a datagram with header hdr.
func (kr *keyring) additional(dst []byte, hdr []byte) []byte {
	dst = append(dst, hdr...)
	return append(dst, kr.label...)
}

// seal appends the datagram of m with header h to dst, sealed with the
// first key.
func (kr *keyring) seal(dst []byte, h header, m beat) []byte {
	start := len(dst)
	dst = h.append(dst)
	var ad [headerLen + 256]byte
	aad := kr.additional(ad[:0], dst[start:])
	plain := appendPayload(make([]byte, 0, maxPayload), m)
	n := nonce(h.seq)
	return kr.aead(h.boot, 0, true).Seal(dst, n[:], plain, aad)
}

// open authenticates and decodes a datagram: its header, and its payload
// opened with the first key that opens it.
func (kr *keyring) open(b []byte) (header, beat, error) {
	h, sealed, err := parseHeader(b)
	if err != nil {
		return header{}, beat{}, err
	}
	var ad [headerLen + 256]byte
	aad := kr.additional(ad[:0], b[:headerLen])
	n := nonce(h.seq)
	var buf [maxDatagram]byte
	for i := range kr.keys {
		a := kr.aead(h.boot, i, false)
		plain, err := a.Open(buf[:0], n[:], sealed, aad)
		if err != nil {
			continue
		}
		kr.remember(cacheKey{h.boot, i}, a)
		m, err := decodePayload(plain)
		if err != nil {
			return header{}, beat{}, err
		}
		return h, m, nil
	}
	return header{}, beat{}, errDecrypt
}
