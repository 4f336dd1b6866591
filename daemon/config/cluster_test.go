package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGossipCluster(t *testing.T) {
	if c := mustParse(t, testOptions(), "x.toml", nil); c.Gossip.Cluster != "" {
		t.Errorf("default cluster = %q, want \"\" (no label)", c.Gossip.Cluster)
	}
	c := mustParse(t, testOptions(), "x.toml", []byte("[gossip]\ncluster = \"prod-eu.1\"\n"))
	if c.Gossip.Cluster != "prod-eu.1" {
		t.Errorf("cluster = %q", c.Gossip.Cluster)
	}
	for _, bad := range []string{`"a b"`, `"-x"`, `"` + strings.Repeat("a", 64) + `"`, `1`} {
		_, err := testOptions().Parse("x.toml", []byte("[gossip]\ncluster = "+bad+"\n"))
		if diff := cmp.Diff([]string{"2:gossip.cluster"}, where(t, err)); diff != "" {
			t.Errorf("cluster = %s (-want +got):\n%s", bad, diff)
		}
	}
}
