package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/gossip/gossiptest"
)

// TestReloadAppliesKeyFile: a reload whose key file changed hands the new
// key set to the running ring, in file order; switching to plaintext is
// not applied (it needs a restart), and the running config says so.
func TestReloadAppliesKeyFile(t *testing.T) {
	keyA, keyB := bytes.Repeat([]byte{0xa1}, 32), bytes.Repeat([]byte{0xb2}, 32)
	withKeys := func(keys ...[]byte) *config.Config {
		c := testConfig(vipWeb)
		c.Gossip.InsecurePlaintext = false
		c.Gossip.SecretKeys = keys
		return c
	}
	tr, err := gossiptest.NewNetwork().NewTransport(simAddr(1))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rc := RingConfig(withKeys(keyA), log, func(bool) {})
	rc.Transport = tr
	ring, err := gossip.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	var next *config.Config
	d, err := New(Options{Config: withKeys(keyA), Logger: log, Ring: ring,
		Load: func() (*config.Config, error) { return next, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(keys [][]byte) []string {
		var out []string
		for _, k := range keys {
			out = append(out, gossip.KeyID(k))
		}
		return out
	}
	for _, step := range [][][]byte{{keyA, keyB}, {keyB, keyA}, {keyB}} {
		next = withKeys(step...)
		d.Reload()
		if diff := cmp.Diff(ids(step), ids(ring.Keys())); diff != "" {
			t.Fatalf("ring keys after reload (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(ids(step), ids(d.config().Gossip.SecretKeys)); diff != "" {
			t.Errorf("running config keys (-want +got):\n%s", diff)
		}
	}
	if !strings.Contains(logs.String(), "changed=gossip.secret_key_file") {
		t.Errorf("log does not say the key file changed live:\n%s", logs.String())
	}

	plain := testConfig(vipWeb)
	next = plain
	d.Reload()
	if diff := cmp.Diff(ids([][]byte{keyB}), ids(ring.Keys())); diff != "" {
		t.Errorf("ring keys after a reload to plaintext (-want +got):\n%s", diff)
	}
	if g := d.config().Gossip; g.InsecurePlaintext || len(g.SecretKeys) != 1 {
		t.Errorf("running config after a reload to plaintext: plaintext %v, %d keys; want the running key", g.InsecurePlaintext, len(g.SecretKeys))
	}
	if !strings.Contains(logs.String(), "keys=gossip.insecure_plaintext") {
		t.Errorf("log does not say plaintext needs a restart:\n%s", logs.String())
	}
}
