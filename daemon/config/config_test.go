package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hostlb/hostlb/netif"
)

var (
	rawKey = []byte("0123456789abcdef0123456789ABCDEF")
	b64Key = base64.StdEncoding.EncodeToString(rawKey)
)

// fakeFiles is an Options.ReadFile over a map, failing like ReadSecret on
// a missing or too large file. The default kubeconfig is always there
// (tests of other keys need not care); TestKubeconfig covers it.
func fakeFiles(files map[string]string) func(string, int64) ([]byte, error) {
	return func(name string, limit int64) ([]byte, error) {
		data, ok := files[name]
		if !ok && name == "/etc/hostlb/kubeconfig" {
			data, ok = testKubeconfig, true
		}
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		if int64(len(data)) > limit {
			return nil, tooLarge(name, int64(len(data)), limit)
		}
		return []byte(data), nil
	}
}

// testOptions gives a fixed host name and a valid key at the default path.
func testOptions() Options {
	return Options{
		Hostname: func() (string, error) { return "Test-Host", nil },
		ReadFile: fakeFiles(map[string]string{"/etc/hostlb/gossip.key": b64Key + "\n"}),
	}
}

// testKubeconfig stands for the file `hostlbctl kubeconfig` writes; config
// only checks that it can be read.
const testKubeconfig = "apiVersion: v1\nkind: Config\n"

// redirect is an Options.ReadFile that reads real files, with some paths
// replaced: the shipped files name /etc/hostlb paths.
func redirect(paths map[string]string) func(string, int64) ([]byte, error) {
	return func(name string, limit int64) ([]byte, error) {
		if p, ok := paths[name]; ok {
			name = p
		}
		return ReadSecret(name, limit)
	}
}

var cmpConfig = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// where renders errors as "line:key", what most tests pin down.
func where(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not an Errors: %v", err, err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = fmt.Sprintf("%d:%s", e.Line, e.Key)
	}
	return out
}

func mustParse(t *testing.T, o Options, file string, data []byte) *Config {
	t.Helper()
	c, err := o.Parse(file, data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", file, err)
	}
	return c
}

func TestThreeErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/three-errors.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = testOptions().Parse("hostlb.toml", data)
	want := "hostlb.toml:6:1: gossip.bnid: unknown key (did you mean \"bind\"?)\n" +
		"hostlb.toml:9:23: l2.gratuitous_interval: \"5x\" is not a duration (use a number and a unit: \"1.5s\", \"300ms\", \"2m\")\n" +
		"hostlb.toml:13:28: vip[0].addresses[1]: \"10.1.2.x\" is not an IP address"
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"6:gossip.bnid", "9:l2.gratuitous_interval", "13:vip[0].addresses[1]"}, where(t, err)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestManyErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/many-errors.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = testOptions().Parse("testdata/many-errors.toml", data)
	want := []string{
		"2:node.name",
		"3:node.labels.\"bad key!\"",
		"6:log.level",
		"7:log.format",
		"10:gossip.bind",
		"11:gossip.join[2]",
		"12:gossip.profile",
		"15:l2.interfaces[1]",
		"17:l2.gratuitous_interval",
		"18:l2.refresh_interval",
		"21:bgp.router_id",
		"24:bgp.asn",
		"27:bgp.peer[0].hold_time",
		"29:bgp.peer[0].bfd.multiplier",
		"31:bgp.peer[1].asn",
		"32:bgp.peer[1].address",
		"33:bgp.peer[1].hold_time",
		"36:metrics.listen",
		"39:control.socket",
		"44:vip[0].addresses[1]",
		"45:vip[0].interfaces",
		"46:vip[0].health.timeout",
		"49:vip[1].name",
		"50:vip[1].addresses[0]",
		"51:vip[1].local",
	}
	if diff := cmp.Diff(want, where(t, err)); diff != "" {
		t.Errorf("(-want +got):\n%s\nfull:\n%v", diff, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string // "line:key"
		msg        string   // substring of the first error, if set
	}{
		{"unknown section", "[nodes]\nname = \"x\"", []string{"1:nodes"}, `did you mean "node"`},
		{"unknown top key", "foo = 1", []string{"1:foo"}, "known keys: node, log, gossip"},
		{"section not a table", "log = \"debug\"", []string{"1:log"}, "expected a table, got a string"},
		{"wrong type", "[log]\nlevel = 5", []string{"2:log.level"}, "expected a string, got an integer"},
		{"bad level", "[log]\nlevel = \"verbose\"", []string{"2:log.level"}, "not one of debug, info, warn, error"},
		{"bad node name", "[node]\nname = \"N_1\"", []string{"2:node.name"}, "not a valid node name"},
		{"empty node name", "[node]\nname = \"\"", []string{"2:node.name"}, "is empty"},
		{"label value", "[node]\nlabels = { a = \"-x\" }", []string{"2:node.labels.a"}, "label value"},
		{"labels wrong type", "[node]\nlabels = { a = 1 }", []string{"2:node.labels.a"}, "expected a string"},
		{"bind hostname", "[gossip]\nbind = \"localhost:7947\"", []string{"2:gossip.bind"}, "not an IP address or ip:port"},
		{"bind port 0", "[gossip]\nbind = \"0.0.0.0:0\"", []string{"2:gossip.bind"}, "port 0"},
		{"bind port range", "[gossip]\nbind = \"0.0.0.0:65536\"", []string{"2:gossip.bind"}, ""},
		{"advertise unspecified", "[gossip]\nadvertise = \"0.0.0.0\"", []string{"2:gossip.advertise"}, "cannot reach"},
		{"join bad", "[gossip]\njoin = [\"192.0.2.1:0\", 7]", []string{"2:gossip.join[0]", "2:gossip.join[1]"}, "port"},
		{"join not array", "[gossip]\njoin = \"192.0.2.1\"", []string{"2:gossip.join"}, "expected an array"},
		{"plaintext wrong type", "[gossip]\ninsecure_plaintext = \"yes\"", []string{"2:gossip.insecure_plaintext"}, "expected a boolean"},
		{"bad regex", "[l2]\nexclude = [\"(\"]", []string{"2:l2.exclude[0]"}, "bad regular expression"},
		{"empty regex", "[l2]\ninterfaces = [\"//\"]", []string{"2:l2.interfaces[0]"}, "empty regular expression"},
		{"empty exclude", "[l2]\nexclude = [\"^docker\", \"//\"]", []string{"2:l2.exclude[1]"}, "empty regular expression"},
		{"bad slashed exclude", "[l2]\nexclude = [\"/(/\"]", []string{"2:l2.exclude[0]"}, `bad regular expression "/(/"`},
		{"vip bad pattern", "[[vip]]\nname = \"v\"\naddresses = [\"192.0.2.1\"]\ninterfaces = [\"eth0:1\"]", []string{"4:vip[0].interfaces[0]"}, "not an interface name"},
		{"long ifname", "[l2]\ninterfaces = [\"abcdefghijklmnop\"]", []string{"2:l2.interfaces[0]"}, "not an interface name"},
		{"duration int", "[l2]\nrefresh_interval = 5", []string{"2:l2.refresh_interval"}, `such as "5s"`},
		{"duration negative", "[l2]\nrefresh_interval = \"-1s\"", []string{"2:l2.refresh_interval"}, "negative"},
		{"count negative", "[l2]\ngratuitous_count = -1", []string{"2:l2.gratuitous_count"}, "out of range 0..100"},
		{"count without interval", "[l2]\ngratuitous_count = 2\ngratuitous_interval = \"0s\"", []string{"3:l2.gratuitous_interval"}, "more than 0"},
		{"peer without asn", "[bgp]\n\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 1", []string{"3:bgp.asn"}, "required when a [[bgp.peer]] is set"},
		{"asn zero", "[bgp]\nasn = 0", []string{"2:bgp.asn"}, "out of range 1..4294967295"},
		{"asn too big", "[bgp]\nasn = 4294967296", []string{"2:bgp.asn"}, ""},
		{"router id v6", "[bgp]\nrouter_id = \"2001:db8::1\"", []string{"2:bgp.router_id"}, "IPv4"},
		{"listen port", "[bgp]\nlisten_port = 70000", []string{"2:bgp.listen_port"}, "0..65535"},
		{"peer table not array", "[bgp]\nasn = 1\n[bgp.peer]\naddress = \"192.0.2.1\"", []string{"3:bgp.peer"}, "write [[bgp.peer]]"},
		{"peer bad address", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2\"\nasn = 2", []string{"4:bgp.peer[0].address"}, "not an IP address"},
		{"peer missing address", "[bgp]\nasn = 1\n[[bgp.peer]]\nasn = 2", []string{"3:bgp.peer[0].address"}, "required"},
		{"peer source family", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nsource_address = \"2001:db8::1\"", []string{"6:bgp.peer[0].source_address"}, "different IP families"},
		{"peer duplicate", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 3", []string{"7:bgp.peer[1].address"}, "already bgp.peer[0]"},
		{"hold < 3 keepalive", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nhold_time = \"6s\"", []string{"6:bgp.peer[0].hold_time"}, "less than 3 × keepalive_time"},
		{"hold fraction", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nhold_time = \"9.5s\"", []string{"6:bgp.peer[0].hold_time"}, "whole seconds"},
		{"keepalive zero", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nkeepalive_time = \"0s\"", []string{"6:bgp.peer[0].keepalive_time"}, "expire"},
		{"bfd multiplier 0", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nbfd = { multiplier = 0 }", []string{"6:bgp.peer[0].bfd.multiplier"}, "1..255"},
		{"bfd multiplier 256", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\n[bgp.peer.bfd]\nmultiplier = 256", []string{"7:bgp.peer[0].bfd.multiplier"}, "1..255"},
		{"bfd zero rx", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\nbfd = { min_rx = \"0s\", typo = 1 }", []string{"6:bgp.peer[0].bfd.min_rx", "6:bgp.peer[0].bfd.typo"}, "more than 0"},
		{"password missing", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\npassword_file = \"/etc/hostlb/p\"", []string{"6:bgp.peer[0].password_file"}, "open /etc/hostlb/p: file does not exist (put the TCP-MD5 password in it"},
		{"import table 255", "[bgp.import]\ntable = 255", []string{"2:bgp.import.table"}, "local table"},
		{"import table 0", "[bgp.import]\ntable = 0", []string{"2:bgp.import.table"}, ""},
		{"lease namespace", "[kubernetes]\nlease_namespace = \"Kube_System\"", []string{"2:kubernetes.lease_namespace"}, "namespace"},
		{"metrics listen", "[metrics]\nlisten = \"9476\"", []string{"2:metrics.listen"}, "not host:port"},
		{"control relative", "[control]\nsocket = \"hostlb.sock\"", []string{"2:control.socket"}, "absolute"},
		{"vip not array", "[vip]\nname = \"a\"", []string{"1:vip"}, "write [[vip]]"},
		{"vip missing all", "[[vip]]\nlocal = true", []string{"1:vip[0].name", "1:vip[0].addresses"}, "required"},
		{"vip prefix", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1/32\"]", []string{"3:vip[0].addresses[0]"}, "is a prefix"},
		{"vip bad mode", "[[vip]]\nname = \"a\"\nmode = \"l3\"\naddresses = [\"192.0.2.1\"]", []string{"3:vip[0].mode"}, "not one of l2, bgp"},
		{"vip multicast", "[[vip]]\nname = \"a\"\naddresses = [\"224.0.0.1\"]", []string{"3:vip[0].addresses[0]"}, "cannot be a VIP"},
		{"vip dup name", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.2\"]", []string{"5:vip[1].name"}, `"a" is already the name of vip[0]`},
		{"vip dup address", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n[[vip]]\nname = \"b\"\naddresses = [\"::ffff:192.0.2.1\"]", []string{"6:vip[1].addresses[0]"}, `192.0.2.1 is already an address of vip[0] ("a")`},
		{"vip dup address same vip", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\", \"192.0.2.1\"]", []string{"3:vip[0].addresses[1]"}, "already"},
		{"vip bgp without peers", "[[vip]]\nname = \"a\"\nmode = \"bgp\"\naddresses = [\"192.0.2.1\"]", []string{"3:vip[0].mode"}, "needs at least one [[bgp.peer]]"},
		{"vip bgp interfaces", "[bgp]\nasn = 1\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 2\n[[vip]]\nname = \"a\"\nmode = \"bgp\"\naddresses = [\"192.0.2.9\"]\ninterfaces = [\"eth0\"]", []string{"10:vip[0].interfaces"}, "only applies to mode \"l2\""},
		{"health timeout", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\nhealth = { tcp = \"127.0.0.1:80\", timeout = \"2s\" }", []string{"4:vip[0].health.timeout"}, "2s must be less than interval (1s)"},
		{"health no tcp", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n[vip.health]\ninterval = \"5s\"", []string{"4:vip[0].health.tcp"}, "required"},
		{"health bad tcp", "[[vip]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\nhealth = { tcp = \"127.0.0.1\" }", []string{"4:vip[0].health.tcp"}, "not host:port"},
		{"syntax", "[node]\nname = \"a\"\nlabels = {\n", []string{"3:"}, ""},
		{"syntax unterminated header", "[node\nname = 1", []string{"1:"}, ""},
		{"duplicate key", "[log]\nlevel = \"info\"\nlevel = \"debug\"", []string{"3:"}, ""},
		{"table twice", "[log]\n[log]", []string{"2:"}, ""},
		{"dotted key", "log.level = 3", []string{"1:log.level"}, "expected a string"},
		{"quoted key path", "[node.labels]\n\"a b\" = \"x\"", []string{"2:node.labels.\"a b\""}, "not a valid label name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testOptions().Parse("t.toml", []byte(tc.toml))
			if err == nil {
				t.Fatalf("Parse succeeded, want %v", tc.want)
			}
			if diff := cmp.Diff(tc.want, where(t, err)); diff != "" {
				t.Errorf("(-want +got):\n%s\nfull:\n%v", diff, err)
			}
			var errs Errors
			errors.As(err, &errs)
			if !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", errs[0].Msg, tc.msg)
			}
			for _, e := range errs {
				if e.File != "t.toml" {
					t.Errorf("error %v has File %q", e, e.File)
				}
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	c := mustParse(t, testOptions(), "/etc/hostlb/hostlb.toml", nil)
	want := defaults("test-host")
	want.Gossip.SecretKeys = [][]byte{rawKey}
	want.Kubernetes.KubeconfigData = []byte(testKubeconfig)
	if diff := cmp.Diff(want, c, cmpConfig); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/good-full.toml")
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.ReadFile = fakeFiles(map[string]string{
		"/cfg/keys/gossip.key": string(rawKey),
		"/cfg/peer.password":   "s3cret\n",
	})
	got := mustParse(t, o, "/cfg/hostlb.toml", data)

	want := defaults("test-host")
	want.Node = Node{Name: "node-1.example", Labels: map[string]string{"rack": "a1", "topology.kubernetes.io/zone": "z1"}}
	want.Log = Log{Level: slog.LevelDebug, Format: FormatJSON}
	want.Gossip = Gossip{
		Bind:          netip.MustParseAddrPort("192.0.2.5:7947"),
		Advertise:     netip.MustParseAddrPort("192.0.2.5:7947"),
		Join:          []string{"192.0.2.6:7947", "[2001:db8::6]:7947", "seed.example:7947", "[2001:db8::7]:8000"},
		SecretKeyFile: "/cfg/keys/gossip.key",
		SecretKeys:    [][]byte{rawKey},
		Profile:       ProfileLAN,
	}
	want.L2 = L2{
		Interfaces:      []string{"eth0", "/^bond[0-9]+$/"},
		Exclude:         []string{"^docker", "/^veth/"},
		RefreshInterval: 30 * time.Second,
	}
	peer2 := defaultPeer()
	peer2.Address = netip.MustParseAddr("2001:db8::1")
	peer2.ASN = 64501
	peer2.BFD.Enabled = true
	want.BGP = BGP{
		ASN:        4200000000,
		RouterID:   netip.MustParseAddr("192.0.2.5"),
		ListenPort: 179,
		Peers: []BGPPeer{{
			Address:         netip.MustParseAddr("192.0.2.1"),
			ASN:             64500,
			Port:            1179,
			SourceAddress:   netip.MustParseAddr("192.0.2.5"),
			EBGPMultihop:    2,
			PasswordFile:    "/cfg/peer.password",
			Password:        "s3cret",
			GracefulRestart: true,
			BFD:             BFD{Enabled: true, MinRx: 100 * time.Millisecond, MinTx: 200 * time.Millisecond, Multiplier: 5},
		}, peer2},
		Import: BGPImport{Enabled: true, Table: 100, Metric: 0},
	}
	want.Kubernetes = Kubernetes{LeaseNamespace: "hostlb", LoadBalancerClass: "hostlb.io/bgp"}
	want.Metrics.Listen = ""
	want.Control.Socket = "/run/hostlb/ctl.sock"
	want.VIPs = []VIP{{
		Name:         "apiserver",
		Mode:         ModeL2,
		Addresses:    []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101")},
		NodeSelector: map[string]string{"rack": "a1"},
		Interfaces:   []string{"eth1"},
		Health:       &Health{TCP: "localhost:6443", Interval: time.Second, Timeout: 500 * time.Millisecond},
	}, {
		Name:      "dns",
		Mode:      ModeBGP,
		Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::53")},
		Local:     true,
		Health:    &Health{TCP: "[::1]:53", Interval: 2 * time.Second, Timeout: time.Second},
	}}
	if diff := cmp.Diff(want, got, cmpConfig); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestShipped parses configs/ as packaged, with the /etc/hostlb files they
// name redirected to temporary ones.
func TestShipped(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "gossip.key")
	pw := filepath.Join(dir, "tor.password")
	if err := os.WriteFile(key, []byte(b64Key+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(testKubeconfig), 0o640); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Hostname: func() (string, error) { return "node-1", nil },
		ReadFile: redirect(map[string]string{
			"/etc/hostlb/gossip.key":     key,
			"/etc/hostlb/tor-a.password": pw,
			"/etc/hostlb/tor-b.password": pw,
			"/etc/hostlb/kubeconfig":     kubeconfig,
		}),
	}
	for _, file := range []string{"../../configs/hostlb.toml", "../../configs/examples/static-l2.toml", "../../configs/examples/bgp.toml"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := o.Load(file)
			if err != nil {
				t.Fatalf("Load:\n%v", err)
			}
			if diff := cmp.Diff([][]byte{rawKey}, c.Gossip.SecretKeys); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
			if filepath.Base(file) == "hostlb.toml" {
				// The shipped file spells out every default.
				want := defaults("node-1")
				want.Gossip.SecretKeys = [][]byte{rawKey}
				want.Kubernetes.KubeconfigData = []byte(testKubeconfig)
				if diff := cmp.Diff(want, c, cmpConfig); diff != "" {
					t.Errorf("shipped file differs from Default() (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestShippedCoversSchema checks that the shipped file mentions every key
// the decoder knows, so that users find each one documented.
func TestShippedCoversSchema(t *testing.T) {
	data, err := os.ReadFile("../../configs/hostlb.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"[node]", "name =", "labels =", "[log]", "level =", "format =", "[gossip]", "bind =", "advertise =", "join =",
		"secret_key_file =", "insecure_plaintext =", "profile =", "cluster =", "[l2]", "interfaces =", "exclude =",
		"gratuitous_count =", "gratuitous_interval =", "refresh_interval =", "[bgp]", "asn =", "router_id =",
		"listen_port =", "[[bgp.peer]]", "address =", "port =", "source_address =", "hold_time =",
		"keepalive_time =", "ebgp_multihop =", "password_file =", "graceful_restart =", "bfd =", "min_rx =",
		"min_tx =", "multiplier =", "[bgp.import]", "enabled =", "table =", "metric =", "[kubernetes]",
		"kubeconfig =", "lease_namespace =", "load_balancer_class =", "[metrics]", "listen =", "[control]",
		"socket =", "[[vip]]", "mode =", "addresses =", "node_selector =", "local =", "health =", "tcp =",
		"interval =", "timeout =",
	} {
		if !strings.Contains(string(data), k) {
			t.Errorf("configs/hostlb.toml does not mention %q", k)
		}
	}
}

func TestGossipKey(t *testing.T) {
	const conf = "[gossip]\nsecret_key_file = \"gossip.key\"\n"
	key2 := []byte("fedcba9876543210FEDCBA9876543210")
	b64Key2 := base64.StdEncoding.EncodeToString(key2)
	const want = "; want one base64-encoded 32-byte key per line, the first one used to send (create one with: umask 027; hostlbctl keygen > /etc/hostlb/gossip.key; chgrp hostlb /etc/hostlb/gossip.key)"
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		want    [][]byte
		msg     string
	}{
		{name: "raw", content: ptr(string(rawKey)), want: [][]byte{rawKey}},
		{name: "base64", content: ptr(b64Key), want: [][]byte{rawKey}},
		{name: "base64 newline", content: ptr(b64Key + "\r\n \n"), want: [][]byte{rawKey}},
		{name: "two keys, primary first", content: ptr(b64Key2 + "\n" + b64Key + "\n"), want: [][]byte{key2, rawKey}},
		{name: "comments and blank lines", content: ptr("# rotation 2024-05: new key first\n\n  " + b64Key + "  \r\n# old\n" + b64Key2 + "\n"),
			want: [][]byte{rawKey, key2}},
		{name: "raw newline is not raw", content: ptr(string(rawKey) + "\n"),
			msg: "/etc/hostlb/gossip.key line 1 holds the base64 of 24 bytes" + want},
		{name: "binary", content: ptr("\x00\xff" + string(rawKey)),
			msg: "/etc/hostlb/gossip.key line 1 is not base64 (nor is the file one raw 32-byte key)" + want},
		{name: "bad second line", content: ptr(b64Key + "\n" + base64.StdEncoding.EncodeToString(rawKey[:16]) + "\n"),
			msg: "/etc/hostlb/gossip.key line 2 holds the base64 of 16 bytes; want"},
		{name: "two keys on one line", content: ptr(b64Key + " " + b64Key2),
			msg: "/etc/hostlb/gossip.key line 1 is not base64"},
		{name: "repeated key", content: ptr(b64Key + "\n# again\n" + b64Key + "\n"),
			msg: "/etc/hostlb/gossip.key line 3 repeats the key of line 1"},
		{name: "short raw", content: ptr("abc"), msg: "line 1 is not base64"},
		{name: "only comments", content: ptr("# no key yet\n\n"), msg: "/etc/hostlb/gossip.key holds no key, only blank lines and comments"},
		{name: "empty", content: ptr(""), msg: "/etc/hostlb/gossip.key is empty"},
		{name: "too large", content: ptr(strings.Repeat("#\n", KeyFileLimit/2+1)),
			msg: "/etc/hostlb/gossip.key is 65538 bytes, more than the 64 KiB this file may hold"},
		{name: "missing",
			msg: "open /etc/hostlb/gossip.key: file does not exist (create one with: umask 027; hostlbctl keygen > /etc/hostlb/gossip.key; chgrp hostlb /etc/hostlb/gossip.key)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			if tc.content != nil {
				files["/etc/hostlb/gossip.key"] = *tc.content
			}
			o := testOptions()
			o.ReadFile = fakeFiles(files)
			c, err := o.Parse("/etc/hostlb/hostlb.toml", []byte(conf))
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, c.Gossip.SecretKeys); diff != "" {
					t.Errorf("keys (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff([]string{"2:gossip.secret_key_file"}, where(t, err)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestGossipKeyRealFiles(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(conf, []byte("[node]\nname = \"n1\"\n[gossip]\nsecret_key_file = \"gossip.key\"\n[kubernetes]\nenabled = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Missing, with no [gossip] position to blame beyond the key line.
	_, err := Load(conf)
	if diff := cmp.Diff([]string{"4:gossip.secret_key_file"}, where(t, err)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "no such file or directory (create one with: umask 027; hostlbctl keygen > "+filepath.Join(dir, "gossip.key")) {
		t.Errorf("unexpected error: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), rawKey, 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]byte{rawKey}, c.Gossip.SecretKeys); diff != "" {
		t.Errorf("key (-want +got):\n%s", diff)
	}
	if c.Gossip.SecretKeyFile != filepath.Join(dir, "gossip.key") {
		t.Errorf("SecretKeyFile = %q, want it resolved against the config directory", c.Gossip.SecretKeyFile)
	}
}

func TestDefaultKeyMissingHasNoLine(t *testing.T) {
	o := testOptions()
	o.ReadFile = fakeFiles(nil)
	_, err := o.Parse("hostlb.toml", []byte("[log]\nlevel = \"bad\"\n"))
	if diff := cmp.Diff([]string{"0:gossip.secret_key_file", "2:log.level"}, where(t, err)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestInsecurePlaintext(t *testing.T) {
	o := testOptions()
	o.ReadFile = fakeFiles(nil)
	c := mustParse(t, o, "x.toml", []byte("[gossip]\ninsecure_plaintext = true\nsecret_key_file = \"/nonexistent\"\n"))
	if c.Gossip.SecretKeys != nil || !c.Gossip.InsecurePlaintext {
		t.Errorf("got keys %v plaintext %v", c.Gossip.SecretKeys, c.Gossip.InsecurePlaintext)
	}
}

func TestHostname(t *testing.T) {
	o := testOptions()
	o.Hostname = func() (string, error) { return "bad_host", nil }
	_, err := o.Parse("x.toml", nil)
	if diff := cmp.Diff([]string{"0:node.name"}, where(t, err)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	o.Hostname = func() (string, error) { return "", errors.New("no") }
	_, err = o.Parse("x.toml", []byte("[node]\nlabels = {}"))
	if diff := cmp.Diff([]string{"1:node.name"}, where(t, err)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Setting node.name makes the host name irrelevant.
	mustParse(t, o, "x.toml", []byte("[node]\nname = \"n1\""))
	if got := Default().Node.Name; got == "" {
		t.Errorf("Default().Node.Name is empty")
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("errors.As(Errors) on %v", err)
	}
	var perrs *Errors
	if !errors.As(err, &perrs) || len(*perrs) != 1 {
		t.Fatalf("errors.As(*Errors) on %v", err)
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 0 {
		t.Fatalf("errors.As(*Error) on %v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if !strings.HasSuffix(err.Error(), "missing.toml: cannot read: no such file or directory") {
		t.Errorf("message: %v", err)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 3, Col: 2, Key: "a.b", Msg: "bad"}, "f:3:2: a.b: bad"},
		{Error{File: "f", Line: 3, Msg: "bad"}, "f:3: bad"},
		{Error{File: "f", Key: "a", Msg: "bad"}, "f: a: bad"},
		{Error{Line: 1, Col: 1, Msg: "bad"}, "1:1: bad"},
		{Error{Msg: "bad"}, "bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
	if got := (Errors{{Msg: "a"}, {Msg: "b"}}).Error(); got != "a\nb" {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestColumnsCountCharacters(t *testing.T) {
	_, err := testOptions().Parse("x.toml", []byte("[node.labels]\n\"ключ\" = \"ü\"\n"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("got %v", err)
	}
	// Label name errors point at the key.
	if errs[0].Line != 2 || errs[0].Col != 1 {
		t.Errorf("got %d:%d, want 2:1 (%v)", errs[0].Line, errs[0].Col, errs[0])
	}
	_, err = testOptions().Parse("x.toml", []byte("[log] # ü\nlevel = 'ü'\n"))
	errs = nil
	errors.As(err, &errs)
	if len(errs) != 1 || errs[0].Col != 9 {
		t.Errorf("got %v, want column 9", err)
	}
}

// What [l2] decodes to selects interfaces through netif.NewSelector, the
// one implementation the L2 output runs; config only checks the entries
// with the same parser.
func TestL2PatternsSelect(t *testing.T) {
	selected := func(t *testing.T, l L2) map[string]bool {
		t.Helper()
		s, err := netif.NewSelector(l.Interfaces, l.Exclude)
		if err != nil {
			t.Fatalf("config accepted what the selector rejects: %v", err)
		}
		var links []netif.Link
		for i, n := range []string{"eth0", "veth0", "docker0", "bond0", "lo0", "hostlb0", "veth1"} {
			links = append(links, netif.Link{Index: i + 1, Name: n, Up: true, Broadcast: true})
		}
		st := netif.NewState(links...)
		got := map[string]bool{}
		for _, l := range links {
			got[l.Name] = s.Check(st, l) == ""
		}
		return got
	}
	tests := []struct {
		name, toml string
		want       map[string]bool
	}{{
		// The review's case: the slashes were once compiled into the pattern.
		name: "slashed exclude", toml: "[l2]\nexclude = [\"/^veth/\"]\n",
		want: map[string]bool{"eth0": true, "veth0": false, "docker0": true, "bond0": true, "lo0": true, "hostlb0": true, "veth1": false},
	}, {
		name: "defaults", toml: "",
		want: map[string]bool{"eth0": true, "veth0": false, "docker0": false, "bond0": true, "lo0": true, "hostlb0": false, "veth1": false},
	}, {
		name: "names beat excludes, regexes do not", toml: "[l2]\ninterfaces = [\"docker0\", \"/^eth/\", \"/^veth/\"]\n",
		want: map[string]bool{"eth0": true, "veth0": false, "docker0": true, "bond0": false, "lo0": false, "hostlb0": false, "veth1": false},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, testOptions(), "x.toml", []byte(tt.toml))
			if diff := cmp.Diff(tt.want, selected(t, c.L2)); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKubeconfig(t *testing.T) {
	missing := func(name string, _ int64) ([]byte, error) {
		if name == "/etc/hostlb/gossip.key" {
			return []byte(b64Key), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	denied := func(name string, _ int64) ([]byte, error) {
		if name == "/etc/hostlb/gossip.key" {
			return []byte(b64Key), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	for _, tc := range []struct {
		name, conf string
		read       func(string, int64) ([]byte, error)
		where      []string
		msg        string
	}{
		{"missing", "", missing, []string{"0:kubernetes.kubeconfig"}, "hostlbctl kubeconfig --server"},
		{"missing, named", "[kubernetes]\nkubeconfig = \"/etc/hostlb/kubeconfig\"\n", missing,
			[]string{"2:kubernetes.kubeconfig"}, "file does not exist"},
		{"unreadable", "", denied, []string{"0:kubernetes.kubeconfig"}, "chgrp hostlb /etc/hostlb/kubeconfig"},
		{"disabled", "[kubernetes]\nenabled = false\n", missing, nil, ""},
		{"in-cluster", "[kubernetes]\nkubeconfig = \"\"\n", missing, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			o.ReadFile = tc.read
			_, err := o.Parse("/etc/hostlb/hostlb.toml", []byte(tc.conf))
			if tc.where == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(tc.where, where(t, err)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}
