package daemon

import (
	"slices"
	"testing"

	"github.com/hostlb/hostlb/daemon/config"
)

func TestUnservedKeysNamesEveryAcceptedButUnbuiltFeature(t *testing.T) {
	c := config.Default()
	c.Metrics.Listen = ""
	c.Control.Socket = ""
	c.Kubernetes.LoadBalancerClass = ""
	if got := unservedKeys(c); len(got) != 0 {
		t.Errorf("a config using only what is built: %v", got)
	}
	c.BGP.Peers = []config.BGPPeer{{}}
	c.BGP.Import.Enabled = true
	c.BGP.ListenPort = 179
	c.VIPs = []config.VIP{{Name: "r", Mode: config.ModeBGP}, {Name: "w", Mode: config.ModeL2}}
	c.Kubernetes.LoadBalancerClass = "example.com/bgp"
	c.Metrics.Listen = "127.0.0.1:9476"
	c.Control.Socket = "/run/hostlb/hostlb.sock"
	var keys []string
	for _, k := range unservedKeys(c) {
		keys = append(keys, k[0])
	}
	var want []string // every key the configuration accepts is served now
	if !slices.Equal(keys, want) {
		t.Errorf("got %v, want %v", keys, want)
	}
}
