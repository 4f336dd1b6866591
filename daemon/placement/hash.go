package placement

import "net/netip"

// The placement hash is part of the wire contract between daemons: every
// node computes every other node's ownership from its own view, so two
// daemons that hash differently disagree about who announces an IP (two
// owners, or none). Changing anything in this file — the FNV constants, the
// domain tags, the length-prefixed encoding, the finaliser — is a
// wire-compatibility change: it needs a new placement version negotiated over
// gossip, never a silent edit. hash/maphash is not usable here: its seed is
// per process.
//
// The function is FNV-1a 64 over a length-prefixed encoding of the inputs,
// followed by the murmur3 fmix64 finaliser. FNV-1a alone mixes its last bytes
// poorly into the high bits, and placement compares whole hashes (so the high
// bits decide); the finaliser gives every input bit an even chance to flip
// every output bit. Length prefixes make the encoding injective: ("ab", "c")
// and ("a", "bc") hash differently.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211

	// Domain tags keep the two hashes independent even for equal strings.
	tagRank     = 'R' // hash(service, node): orders a Service's eligible nodes
	tagFallback = 'F' // hash(node, ip): picks the fallback owner of one IP
)

type fnv uint64

func newFNV(tag byte) fnv { return fnv(fnvOffset64).byte(tag) }

func (h fnv) byte(b byte) fnv { return (h ^ fnv(b)) * fnvPrime64 }

// uvarint writes n as unsigned LEB128, the length prefix of every string.
func (h fnv) uvarint(n int) fnv {
	u := uint64(n)
	for u >= 0x80 {
		h = h.byte(byte(u) | 0x80)
		u >>= 7
	}
	return h.byte(byte(u))
}

func (h fnv) str(s string) fnv {
	h = h.uvarint(len(s))
	for i := 0; i < len(s); i++ {
		h = (h ^ fnv(s[i])) * fnvPrime64
	}
	return h
}

// addr writes the address as its 4 or 16 bytes behind a length prefix, so an
// IPv4 address and its IPv4-mapped IPv6 form are different IPs. The zone is
// not part of a VIP's identity and is ignored.
func (h fnv) addr(a netip.Addr) fnv {
	if a.Is4() {
		b := a.As4()
		h = h.byte(4)
		for _, c := range b {
			h = h.byte(c)
		}
		return h
	}
	if !a.IsValid() {
		return h.byte(0)
	}
	b := a.As16()
	h = h.byte(16)
	for _, c := range b {
		h = h.byte(c)
	}
	return h
}

// sum finalises with murmur3's fmix64.
func (h fnv) sum() uint64 {
	x := uint64(h)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// rankHash is hash(service, node). Callers hashing many nodes for one
// service start from serviceState and call rankHashFrom.
func rankHash(service, node string) uint64 { return rankHashFrom(serviceState(service), node) }

func serviceState(service string) fnv { return newFNV(tagRank).str(service) }

func rankHashFrom(st fnv, node string) uint64 { return st.str(node).sum() }

// fallbackHash is hash(node, ip).
func fallbackHash(node string, ip netip.Addr) uint64 {
	return newFNV(tagFallback).str(node).addr(ip).sum()
}
