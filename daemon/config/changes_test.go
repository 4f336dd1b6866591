package config

import (
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChanges(t *testing.T) {
	data, err := os.ReadFile("testdata/good-full.toml")
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.ReadFile = fakeFiles(map[string]string{
		"/cfg/keys/gossip.key": string(rawKey),
		"/cfg/peer.password":   "s3cret\n",
	})
	parse := func() *Config { return mustParse(t, o, "/cfg/hostlb.toml", data) }

	for _, tc := range []struct {
		name          string
		edit          func(c *Config)
		live, restart []string
	}{
		{name: "same file parsed twice", edit: func(*Config) {}},
		{name: "log", edit: func(c *Config) { c.Log.Level = slog.LevelWarn; c.Log.Format = FormatText },
			live: []string{"log.level"}, restart: []string{"log.format"}},
		{name: "node labels live, name restart", edit: func(c *Config) {
			c.Node.Labels = map[string]string{"rack": "b2"}
			c.Node.Name = "other"
		}, live: []string{"node.labels"}, restart: []string{"node.name"}},
		{name: "gossip", edit: func(c *Config) {
			c.Gossip.Bind = netip.MustParseAddrPort("0.0.0.0:7000")
			c.Gossip.Advertise = netip.AddrPort{}
			c.Gossip.Join = nil
			c.Gossip.Profile = ProfileWAN
			c.Gossip.InsecurePlaintext = true
		}, live: []string{"gossip.join"},
			restart: []string{"gossip.bind", "gossip.advertise", "gossip.insecure_plaintext", "gossip.profile"}},
		{name: "key content", edit: func(c *Config) { c.Gossip.SecretKeys = [][]byte{[]byte("another key, same file..........")} },
			live: []string{"gossip.secret_key_file"}},
		{name: "second key", edit: func(c *Config) {
			c.Gossip.SecretKeys = append(c.Gossip.SecretKeys, []byte("another key, same file.........."))
		},
			live: []string{"gossip.secret_key_file"}},
		{name: "key file path", edit: func(c *Config) { c.Gossip.SecretKeyFile = "/cfg/keys/next.key" },
			live: []string{"gossip.secret_key_file"}},
		{name: "key to plaintext needs a restart", edit: func(c *Config) {
			c.Gossip.SecretKeys = nil
			c.Gossip.InsecurePlaintext = true
		}, restart: []string{"gossip.insecure_plaintext"}},
		{name: "cluster", edit: func(c *Config) { c.Gossip.Cluster = "other" }, restart: []string{"gossip.cluster"}},
		{name: "l2", edit: func(c *Config) {
			c.L2.Interfaces = []string{"eth9"}
			c.L2.Exclude = nil
			c.L2.GratuitousCount = 9
			c.L2.GratuitousInterval = time.Second
			c.L2.RefreshInterval = 0
		}, live: []string{"l2.interfaces", "l2.exclude", "l2.gratuitous_count", "l2.gratuitous_interval", "l2.refresh_interval"}},
		{name: "bgp", edit: func(c *Config) {
			c.BGP.ASN = 1
			c.BGP.RouterID = netip.Addr{}
			c.BGP.ListenPort = 0
			c.BGP.Peers[0].Password = "next"
			c.BGP.Import.Metric = 7
		}, live: []string{"bgp.peer", "bgp.import"}, restart: []string{"bgp.asn", "bgp.router_id", "bgp.listen_port"}},
		{name: "bfd is part of the peer", edit: func(c *Config) { c.BGP.Peers[1].BFD.MinRx = time.Second },
			live: []string{"bgp.peer"}},
		{name: "kubernetes", edit: func(c *Config) {
			c.Kubernetes = Kubernetes{Enabled: true, Kubeconfig: "/k", LeaseNamespace: "x", LoadBalancerClass: "y"}
		}, live: []string{"kubernetes.load_balancer_class"},
			restart: []string{"kubernetes.enabled", "kubernetes.kubeconfig", "kubernetes.lease_namespace"}},
		{name: "listeners", edit: func(c *Config) { c.Metrics.Listen = ":1"; c.Control.Socket = "/x" },
			restart: []string{"metrics.listen", "control.socket"}},
		{name: "vip health", edit: func(c *Config) { c.VIPs[0].Health.Timeout = time.Millisecond }, live: []string{"vip"}},
		{name: "vip health removed", edit: func(c *Config) { c.VIPs[1].Health = nil }, live: []string{"vip"}},
		{name: "vip selector", edit: func(c *Config) { c.VIPs[0].NodeSelector["x"] = "y" }, live: []string{"vip"}},
		{name: "vip address", edit: func(c *Config) { c.VIPs[1].Addresses[0] = netip.MustParseAddr("2001:db8::54") }, live: []string{"vip"}},
		{name: "vip removed", edit: func(c *Config) { c.VIPs = c.VIPs[:1] }, live: []string{"vip"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, next := parse(), parse()
			tc.edit(next)
			live, restart := Changes(old, next)
			if diff := cmp.Diff(tc.live, live); diff != "" {
				t.Errorf("live (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.restart, restart); diff != "" {
				t.Errorf("restart (-want +got):\n%s", diff)
			}
			// Symmetric.
			live, restart = Changes(next, old)
			if diff := cmp.Diff(tc.live, live); diff != "" {
				t.Errorf("reverse live (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.restart, restart); diff != "" {
				t.Errorf("reverse restart (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangesNil(t *testing.T) {
	live, restart := Changes(nil, nil)
	if live != nil || restart != nil {
		t.Errorf("Changes(nil, nil) = %v, %v", live, restart)
	}
	live, restart = Changes(nil, defaults("n"))
	if len(live) == 0 || len(restart) == 0 {
		t.Errorf("Changes(nil, defaults) = %v, %v; want changes on both sides", live, restart)
	}
}

// TestChangesNilEqualsEmpty: hand-built configs may use nil where Parse
// uses empty; that is no change.
func TestChangesNilEqualsEmpty(t *testing.T) {
	a, b := defaults("n"), defaults("n")
	b.Node.Labels, b.Gossip.Join, b.L2.Interfaces, b.VIPs = nil, nil, nil, nil
	if live, restart := Changes(a, b); live != nil || restart != nil {
		t.Errorf("Changes = %v, %v", live, restart)
	}
}
