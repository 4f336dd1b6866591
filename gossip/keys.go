package gossip

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// SetKeys replaces the ring's keys while it runs: keys[0] becomes the key
// this node encrypts with, and every key in keys decrypts. It never blocks
// on the network and may be called before or during Run.
//
// A rolling rotation across the ring is three passes over every node (see
// `hostlbctl keygen`): add the new key as a second key; make it the first;
// drop the old one. Each pass leaves every node able to decrypt what every
// other node sends, so the ring never splits. Within one call the order is
// the one that keeps that true: the new keys are installed first, then the
// primary switches, and only then are the dropped keys removed.
//
// It fails, changing nothing, on a ring without encryption (switching
// between a key and plaintext needs a restart) or a bad key set.
func (r *Ring) SetKeys(keys [][]byte) error {
	if r.keyring == nil {
		return errors.New("set gossip keys: the ring runs without encryption (insecure_plaintext); turning it on needs a restart")
	}
	if err := checkKeys(keys); err != nil {
		return fmt.Errorf("set gossip keys: %w", err)
	}
	keys = cloneKeys(keys)
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	for _, k := range keys {
		if err := r.keyring.AddKey(k); err != nil {
			return fmt.Errorf("set gossip keys: %w", err)
		}
	}
	if err := r.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("set gossip keys: %w", err)
	}
	r.dropKeys(keys)
	r.log.Info("gossip keys changed", "node", r.cfg.NodeName, "primary", KeyID(keys[0]), "keys", len(keys))
	return nil
}

// dropKeys removes from the keyring every key not in keep (which holds its
// primary).
//
// memberlist hands its decrypting goroutines the keyring's own slice
// (GetKeys), and RemoveKey shifts the keys after the removed one inside that
// slice's array while they may read it: a data race. Removing the last key
// writes nothing, so keys are removed from the end, down to the first one
// to drop, and the kept ones among them are added back (AddKey appends to a
// fresh slice). In the usual rotation the key dropped is the last one and
// nothing is re-added; otherwise a kept secondary key is missing for the
// few microseconds in between, which can cost a peer one packet sent with
// it, never the primary's.
func (r *Ring) dropKeys(keep [][]byte) {
	kept := func(k []byte) bool {
		return slices.ContainsFunc(keep, func(w []byte) bool { return bytes.Equal(w, k) })
	}
	cur := cloneKeys(r.keyring.GetKeys())
	first := slices.IndexFunc(cur, func(k []byte) bool { return !kept(k) })
	if first < 1 { // nothing to drop (and never the primary, at 0)
		return
	}
	for i := len(cur) - 1; i >= first; i-- {
		_ = r.keyring.RemoveKey(cur[i]) // fails only for the primary
	}
	for _, k := range cur[first:] {
		if kept(k) {
			_ = r.keyring.AddKey(k) // a valid key: it was installed
		}
	}
}

// Keys returns the ring's current keys, the primary first (nil without
// encryption). The caller owns the result.
func (r *Ring) Keys() [][]byte {
	if r.keyring == nil {
		return nil
	}
	return cloneKeys(r.keyring.GetKeys())
}

// KeyID names a key in logs without revealing it: the first 8 hex digits
// of its SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}
