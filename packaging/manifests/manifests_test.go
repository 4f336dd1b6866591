package manifests_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/packaging/manifests"
)

const group = "network.deckhouse.io"

// crdWant is what each CRD must declare: the Deckhouse names, and every
// field of the reference tables (deckhouse-metallb-api.md §2.1, §5.1).
type crdWant struct {
	kind, plural, singular string
	shortNames             []string
	required               []string // spec.required
	fields                 []string // paths under spec
}

var crdWants = []crdWant{
	{
		kind: "MetalLoadBalancerClass", plural: "metalloadbalancerclasses", singular: "metalloadbalancerclass",
		shortNames: nil, // Deckhouse has none; "mlbc" would be a hostlb invention
		required:   nil,
		fields: []string{"isDefault", "type", "l2", "l2.interfaces", "addressPool", "nodeSelector",
			"tolerations", "tolerations.effect", "tolerations.key", "tolerations.operator",
			"tolerations.tolerationSeconds", "tolerations.value"},
	},
	{
		kind: "MetalLoadBalancerPool", plural: "metalloadbalancerpools", singular: "metalloadbalancerpool",
		shortNames: []string{"mlbp"},
		required:   []string{"addresses"},
		fields:     []string{"addresses", "autoAssign", "avoidBuggyIPs"},
	},
	{
		kind: "MetalLoadBalancerBGPPeer", plural: "metalloadbalancerbgppeers", singular: "metalloadbalancerbgppeer",
		shortNames: []string{"mlbbp"},
		required:   []string{"peerAddress", "peerASN", "myASN"},
		fields: []string{"peerAddress", "peerPort", "peerASN", "myASN", "routerID", "holdTime",
			"passwordSecretRef", "passwordSecretRef.name", "passwordSecretRef.namespace",
			"sourceAddresses", "sourceAddresses.nodeName", "sourceAddresses.address",
			"bfd", "bfd.receiveInterval", "bfd.transmitInterval", "bfd.detectMultiplier",
			"bfd.echoInterval", "bfd.echoMode", "bfd.passiveMode", "bfd.minimumTTL"},
	},
	{
		kind: "MetalLoadBalancerConfiguration", plural: "metalloadbalancerconfigurations", singular: "metalloadbalancerconfiguration",
		shortNames: []string{"mlbconfig"},
		required:   []string{"mode"},
		fields: []string{"nodeSelector", "mode", "bgp", "bgp.peerNames", "advertisements",
			"advertisements.poolNames", "advertisements.bgp", "advertisements.bgp.communities",
			"advertisements.bgp.localPref", "advertisements.bgp.aggregationLength"},
	},
}

func TestCRDsMatchDeckhouse(t *testing.T) {
	crds := loadCRDs(t)
	if len(crds) != len(crdWants) {
		t.Fatalf("crds/ holds %d CRDs, want %d", len(crds), len(crdWants))
	}
	for _, w := range crdWants {
		t.Run(w.kind, func(t *testing.T) {
			crd := crds[w.kind]
			if crd == nil {
				t.Fatalf("no CRD of kind %s", w.kind)
			}
			if got, want := crd.GetName(), w.plural+"."+group; got != want {
				t.Errorf("name %q, want %q", got, want)
			}
			if got := crd.GetAPIVersion(); got != "apiextensions.k8s.io/v1" {
				t.Errorf("apiVersion %q", got)
			}
			wantLabels := map[string]string{"module": "metallb", "app.kubernetes.io/part-of": "hostlb"}
			if diff := cmp.Diff(wantLabels, crd.GetLabels()); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			spec := crd.Object["spec"].(map[string]any)
			if spec["group"] != group || spec["scope"] != "Cluster" {
				t.Errorf("group %v scope %v, want %s Cluster", spec["group"], spec["scope"], group)
			}
			names := spec["names"].(map[string]any)
			wantNames := map[string]any{"kind": w.kind, "listKind": w.kind + "List", "plural": w.plural, "singular": w.singular}
			if w.shortNames != nil {
				wantNames["shortNames"] = toAny(w.shortNames)
			}
			if diff := cmp.Diff(wantNames, names); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}

			versions := spec["versions"].([]any)
			if len(versions) != 1 {
				t.Fatalf("%d versions, want only v1alpha1", len(versions))
			}
			v := versions[0].(map[string]any)
			if v["name"] != "v1alpha1" || v["served"] != true || v["storage"] != true {
				t.Errorf("version %v served %v storage %v, want v1alpha1 served storage", v["name"], v["served"], v["storage"])
			}
			if diff := cmp.Diff(map[string]any{"status": map[string]any{}}, v["subresources"]); diff != "" {
				t.Errorf("subresources (-want +got):\n%s", diff)
			}

			root := schemaOf(t, crd)
			if root["type"] != "object" {
				t.Errorf("root schema type %v", root["type"])
			}
			status := lookup(root, "status")
			if status == nil || status["type"] != "object" || status["x-kubernetes-preserve-unknown-fields"] != true {
				t.Errorf("status schema %v, want an open object", status)
			}
			specSchema := lookup(root, "spec")
			if specSchema == nil || specSchema["type"] != "object" {
				t.Fatalf("spec schema %v", specSchema)
			}
			if diff := cmp.Diff(toAny(w.required), specSchema["required"]); diff != "" {
				t.Errorf("spec.required (-want +got):\n%s", diff)
			}
			for _, f := range w.fields {
				if lookup(specSchema, f) == nil {
					t.Errorf("spec.%s is not in the schema", f)
				}
			}
			// Every field in the schema is one the reference names: nothing invented.
			for _, f := range fieldPaths(specSchema, "") {
				if !slices.Contains(w.fields, f) {
					t.Errorf("spec.%s is in the schema but not in the Deckhouse API", f)
				}
			}
		})
	}
}

func TestCRDDetails(t *testing.T) {
	crds := loadCRDs(t)
	spec := func(kind string) map[string]any { return lookup(schemaOf(t, crds[kind]), "spec") }

	pool := spec("MetalLoadBalancerPool")
	if got := lookup(pool, "addresses")["minItems"]; got != int64(1) {
		t.Errorf("addresses minItems %v, want 1", got)
	}
	if got := lookup(pool, "autoAssign")["default"]; got != true {
		t.Errorf("autoAssign default %v, want true", got)
	}
	if got := lookup(pool, "avoidBuggyIPs")["default"]; got != false {
		t.Errorf("avoidBuggyIPs default %v, want false", got)
	}
	// The reference's two IPv4 patterns are kept verbatim.
	items := lookup(pool, "addresses")["items"].(map[string]any)
	var patterns []string
	for _, s := range items["anyOf"].([]any) {
		patterns = append(patterns, s.(map[string]any)["pattern"].(string))
	}
	for _, p := range []string{
		`^([0-9]{1,3}\.){3}[0-9]{1,3}(\/(3[0-2]|[1-2][0-9]|[0-9]))$`,
		`^([0-9]{1,3}\.){3}[0-9]{1,3}-([0-9]{1,3}\.){3}[0-9]{1,3}$`,
	} {
		if !slices.Contains(patterns, p) {
			t.Errorf("addresses lacks the Deckhouse pattern %s", p)
		}
	}

	cfg := spec("MetalLoadBalancerConfiguration")
	if diff := cmp.Diff([]any{"BGP"}, lookup(cfg, "mode")["enum"]); diff != "" {
		t.Errorf("mode enum (-want +got):\n%s", diff)
	}
	for path, bounds := range map[string][2]int64{
		"advertisements.bgp.localPref":         {0, 4294967295},
		"advertisements.bgp.aggregationLength": {0, 128},
	} {
		s := lookup(cfg, path)
		if s["minimum"] != bounds[0] || s["maximum"] != bounds[1] {
			t.Errorf("%s bounds %v..%v, want %d..%d", path, s["minimum"], s["maximum"], bounds[0], bounds[1])
		}
	}
	peer := spec("MetalLoadBalancerBGPPeer")
	for path, bounds := range map[string][2]int64{
		"peerPort": {1, 65535}, "peerASN": {1, 4294967295}, "myASN": {1, 4294967295},
	} {
		s := lookup(peer, path)
		if s["minimum"] != bounds[0] || s["maximum"] != bounds[1] {
			t.Errorf("%s bounds %v..%v, want %d..%d", path, s["minimum"], s["maximum"], bounds[0], bounds[1])
		}
	}
	if got := lookup(peer, "routerID")["format"]; got != "ipv4" {
		t.Errorf("routerID format %v, want ipv4", got)
	}
}

// TestAddressValidation: every address form Deckhouse accepts still
// validates, IPv6 is added, and malformed values are refused.
func TestAddressValidation(t *testing.T) {
	crds := loadCRDs(t)
	poolItem := lookup(schemaOf(t, crds["MetalLoadBalancerPool"]), "spec.addresses")["items"].(map[string]any)
	peerAddr := lookup(schemaOf(t, crds["MetalLoadBalancerBGPPeer"]), "spec.peerAddress")
	sourceAddr := lookup(schemaOf(t, crds["MetalLoadBalancerBGPPeer"]), "spec.sourceAddresses.address")

	tests := []struct {
		name   string
		schema map[string]any
		value  string
		ok     bool
	}{
		// Deckhouse's own examples and forms.
		{"pool", poolItem, "10.10.10.1-10.10.10.100", true},
		{"pool", poolItem, "10.42.0.0/24", true},
		{"pool", poolItem, "198.51.100.0/24", true},
		{"pool", poolItem, "203.0.113.100-203.0.113.150", true},
		{"pool", poolItem, "192.0.2.7/32", true},
		{"pool", poolItem, "0.0.0.0/0", true},
		// IPv6, which hostlb adds.
		{"pool", poolItem, "2001:db8::/64", true},
		{"pool", poolItem, "2001:db8:100::/120", true},
		{"pool", poolItem, "2001:DB8::/128", true},
		{"pool", poolItem, "::/0", true},
		{"pool", poolItem, "2001:db8::10-2001:db8::20", true},
		{"pool", poolItem, "::ffff:192.0.2.0/120", true},
		// Refused.
		{"pool", poolItem, "192.0.2.7", false},
		{"pool", poolItem, "192.0.2.0/33", false},
		{"pool", poolItem, "192.0.2.0/", false},
		{"pool", poolItem, "2001:db8::", false},
		{"pool", poolItem, "2001:db8::/129", false},
		{"pool", poolItem, "192.0.2.1-2001:db8::1", false},
		{"pool", poolItem, "2001:db8::1-192.0.2.1", false},
		{"pool", poolItem, "192.0.2.1 - 192.0.2.9", false},
		{"pool", poolItem, "pool-a", false},
		{"pool", poolItem, "", false},

		{"peerAddress", peerAddr, "192.0.2.1", true},
		{"peerAddress", peerAddr, "2001:db8::1", true},
		{"peerAddress", peerAddr, "fe80::1", true},
		{"peerAddress", peerAddr, "192.0.2.256", false},
		{"peerAddress", peerAddr, "192.0.2.0/24", false},
		{"peerAddress", peerAddr, "router-1", false},

		{"sourceAddress", sourceAddr, "192.0.2.11", true},
		{"sourceAddress", sourceAddr, "2001:db8::11", true},
		{"sourceAddress", sourceAddr, "lo0", false},
	}
	for _, tt := range tests {
		errs := validate(tt.name, tt.schema, tt.value)
		if ok := len(errs) == 0; ok != tt.ok {
			t.Errorf("%s %q: valid=%v, want %v (%v)", tt.name, tt.value, ok, tt.ok, errs)
		}
	}
}

// deckhouseObjects are objects as Deckhouse users and Deckhouse's own tests
// write them, including fields of older CRD versions. They must all be
// accepted, with nothing pruned.
const deckhouseObjects = `
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata:
  name: ingress
spec:
  addressPool:
    - 192.0.2.100-192.0.2.150
  isDefault: false
  nodeSelector:
    node-role.kubernetes.io/loadbalancer: ""
  type: L2
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata:
  name: old
spec:
  isDefault: true
  type: L2
  l2:
    interfaces: ["eth1", "eth2"]
  addressPool: ["10.42.0.0/24", "10.33.5.100-10.33.5.106"]
  nodeSelector:
    node-role.deckhouse.io/frontend: ""
  tolerations:
  - effect: NoExecute
    key: dedicated.deckhouse.io
    operator: Equal
    value: frontend
  - key: node.kubernetes.io/unreachable
    operator: Exists
    effect: NoExecute
    tolerationSeconds: 300
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata:
  name: empty
spec: {}
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerPool
metadata:
  name: test-pool
spec:
  addresses:
  - 10.0.0.1-10.0.0.10
  - 198.51.100.0/24
  autoAssign: false
  avoidBuggyIPs: true
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerBGPPeer
metadata:
  name: test-peer
spec:
  peerAddress: 192.168.1.1
  peerPort: 179
  peerASN: 65001
  myASN: 65000
  routerID: 10.0.0.1
  holdTime: 1m30s
  passwordSecretRef:
    name: secret1
    namespace: ns1
  bfd:
    receiveInterval: 300
    transmitInterval: 300
    detectMultiplier: 3
    echoInterval: 50
    echoMode: false
    passiveMode: false
    minimumTTL: 254
  sourceAddresses:
  - nodeName: node-1
    address: 10.10.10.1
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerBGPPeer
metadata:
  name: peer-0
spec:
  peerAddress: 172.18.18.10
  peerASN: 4294967295
  myASN: 64600
  holdTime: 3s
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerConfiguration
metadata:
  name: test-config
spec:
  mode: BGP
  nodeSelector:
    role: worker
  bgp:
    peerNames:
    - test-peer
  advertisements:
  - poolNames:
    - test-pool
    bgp:
      localPref: 100
      communities:
      - "1111:2222"
      - no-export
      - "64512:1:2"
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerConfiguration
metadata:
  name: migrated-bgp
spec:
  mode: BGP
  advertisements:
  - poolNames: [pool-0]
    bgp: {communities: ["42:300"], localPref: 111, aggregationLength: 24}
`

func TestDeckhouseObjectsValidate(t *testing.T) {
	crds := loadCRDs(t)
	for i, doc := range strings.Split(deckhouseObjects, "\n---\n") {
		var obj map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		crd := crds[u.GetKind()]
		if crd == nil {
			t.Fatalf("document %d: no CRD for %s", i, u.GetKind())
		}
		if errs := validate("", schemaOf(t, crd), obj); len(errs) > 0 {
			t.Errorf("%s %s is refused:\n  %s", u.GetKind(), u.GetName(), strings.Join(errs, "\n  "))
		}
	}
}

func TestBadObjectsRefused(t *testing.T) {
	crds := loadCRDs(t)
	tests := []struct {
		kind, spec, want string
	}{
		{"MetalLoadBalancerPool", `{}`, "spec.addresses: required"},
		{"MetalLoadBalancerPool", `{addresses: []}`, "spec.addresses: fewer than 1 items"},
		{"MetalLoadBalancerPool", `{addresses: [192.0.2.0/24], autoassign: true}`, "spec.autoassign: unknown field"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 64500}`, "spec.myASN: required"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 4294967296, myASN: 1}`, "spec.peerASN: above maximum"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 1, myASN: 0}`, "spec.myASN: below minimum"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 1, myASN: 1, holdTime: "90"}`, "spec.holdTime: does not match"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 1, myASN: 1, routerID: "2001:db8::1"}`, "spec.routerID: not an ipv4"},
		{"MetalLoadBalancerBGPPeer", `{peerAddress: 192.0.2.1, peerASN: 1, myASN: 1, passwordSecretRef: {name: s}}`, "spec.passwordSecretRef.namespace: required"},
		{"MetalLoadBalancerConfiguration", `{mode: L2}`, "spec.mode: not one of [BGP]"},
		{"MetalLoadBalancerConfiguration", `{mode: BGP, advertisements: [{bgp: {}}]}`, "spec.advertisements[0].poolNames: required"},
		{"MetalLoadBalancerConfiguration", `{mode: BGP, advertisements: [{poolNames: [a], bgp: {communities: ["65000"]}}]}`, "spec.advertisements[0].bgp.communities[0]: does not match"},
		{"MetalLoadBalancerConfiguration", `{mode: BGP, advertisements: [{poolNames: [a], bgp: {communities: ["1:2:3:4"]}}]}`, "spec.advertisements[0].bgp.communities[0]: does not match"},
		{"MetalLoadBalancerConfiguration", `{mode: BGP, advertisements: [{poolNames: [a], bgp: {aggregationLength: 129}}]}`, "above maximum"},
		{"MetalLoadBalancerClass", `{isDefault: "yes"}`, "spec.isDefault: want boolean"},
		{"MetalLoadBalancerClass", `{nodeSelector: {a: 1}}`, "spec.nodeSelector.a: want string"},
	}
	for _, tt := range tests {
		var spec any
		if err := yaml.Unmarshal([]byte(tt.spec), &spec); err != nil {
			t.Fatal(err)
		}
		obj := map[string]any{"apiVersion": group + "/v1alpha1", "kind": tt.kind, "metadata": map[string]any{"name": "x"}, "spec": spec}
		errs := validate("", schemaOf(t, crds[tt.kind]), obj)
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
			t.Errorf("%s %s: errors %q, want one containing %q", tt.kind, tt.spec, errs, tt.want)
		}
	}
}

func TestExamples(t *testing.T) {
	crds := loadCRDs(t)
	objs, err := manifests.Objects("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if crd := crds[o.GetKind()]; crd != nil {
			if o.GetAPIVersion() != group+"/v1alpha1" {
				t.Errorf("%s %s: apiVersion %q", o.GetKind(), o.GetName(), o.GetAPIVersion())
			}
			if errs := validate("", schemaOf(t, crd), o.Object); len(errs) > 0 {
				t.Errorf("example %s %s is refused:\n  %s", o.GetKind(), o.GetName(), strings.Join(errs, "\n  "))
			}
			continue
		}
		if o.GetKind() != "Service" || o.GetAPIVersion() != "v1" {
			t.Errorf("example %s/%s %s: not a Service nor a hostlb CRD kind", o.GetAPIVersion(), o.GetKind(), o.GetName())
			continue
		}
		decodeStrict(t, o)
		if typ, _, _ := unstructured.NestedString(o.Object, "spec", "type"); typ != "LoadBalancer" {
			t.Errorf("Service %s: type %q, want LoadBalancer", o.GetName(), typ)
		}
	}
	for _, w := range crdWants {
		if kinds[w.kind] == 0 {
			t.Errorf("no example of %s", w.kind)
		}
	}
	if kinds["Service"] < 4 {
		t.Errorf("%d example Services, want the external-ips-count, the shared-IP pair and the forced-IP ones", kinds["Service"])
	}
}

// TestExamplesUseDocumentationAddresses: the examples are applied to test
// clusters and copied by users; they must never name a real network.
func TestExamplesUseDocumentationAddresses(t *testing.T) {
	docs := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	inDocs := func(a netip.Addr) bool {
		return slices.ContainsFunc(docs, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	// Anything that looks like an address, inside any string (keys included).
	addrLike := regexp.MustCompile(`[0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}`)
	files, err := fsGlob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		data, err := manifests.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range addrLike.FindAllString(string(data), -1) {
			a, err := netip.ParseAddr(m)
			if err != nil {
				continue // "42:300" and other colon-separated non-addresses
			}
			seen++
			if !inDocs(a) {
				t.Errorf("%s: %s is not a documentation address (RFC 5737, RFC 3849)", f, m)
			}
		}
	}
	if seen == 0 {
		t.Error("found no address in the examples: the scan is broken")
	}
}

func TestRBAC(t *testing.T) {
	objs, err := manifests.Objects("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		decodeStrict(t, o)
		if byKind[o.GetKind()] != nil {
			t.Errorf("two %s objects", o.GetKind())
		}
		byKind[o.GetKind()] = o
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		if byKind[k] == nil {
			t.Fatalf("rbac.yaml has no %s", k)
		}
	}
	sa := byKind["ServiceAccount"]
	if sa.GetName() != manifests.ServiceAccount || sa.GetNamespace() != manifests.Namespace {
		t.Errorf("ServiceAccount %s/%s, want %s/%s", sa.GetNamespace(), sa.GetName(), manifests.Namespace, manifests.ServiceAccount)
	}

	// The ClusterRole grants exactly this, one "group resource verb" a line.
	wantCluster := []string{
		"core services get", "core services list", "core services watch",
		"core services/status get", "core services/status patch", "core services/status update",
		"discovery.k8s.io endpointslices list", "discovery.k8s.io endpointslices watch",
		"core nodes get", "core nodes list", "core nodes watch",
		"core events create", "core events patch", "core events update",
		"events.k8s.io events create", "events.k8s.io events patch", "events.k8s.io events update",
		// Label selectors cannot be expressed in RBAC: no get, so no Secret by name.
		"core secrets list", "core secrets watch",
	}
	for _, p := range []string{"metalloadbalancerclasses", "metalloadbalancerpools", "metalloadbalancerbgppeers", "metalloadbalancerconfigurations"} {
		for _, v := range []string{"get", "list", "watch"} {
			wantCluster = append(wantCluster, group+" "+p+" "+v)
		}
	}
	cr := byKind["ClusterRole"]
	if cr.GetName() != "hostlb" {
		t.Errorf("ClusterRole %q, want hostlb", cr.GetName())
	}
	if diff := cmp.Diff(sorted(wantCluster), grants(t, cr)); diff != "" {
		t.Errorf("ClusterRole grants (-want +got):\n%s", diff)
	}

	role := byKind["Role"]
	if role.GetName() != "hostlb-ipam-lease" || role.GetNamespace() != manifests.Namespace {
		t.Errorf("Role %s/%s", role.GetNamespace(), role.GetName())
	}
	// create cannot be limited by name; the rest is limited to the daemon's
	// one Lease, which it watches with the field selector metadata.name.
	lease := " [" + kube.LeaseName + "]"
	wantRole := []string{
		"coordination.k8s.io leases create",
		"coordination.k8s.io leases get" + lease,
		"coordination.k8s.io leases list" + lease,
		"coordination.k8s.io leases watch" + lease,
		"coordination.k8s.io leases update" + lease,
	}
	if diff := cmp.Diff(sorted(wantRole), grants(t, role)); diff != "" {
		t.Errorf("Role grants (-want +got):\n%s", diff)
	}

	wantSubjects := []any{map[string]any{"kind": "ServiceAccount", "name": manifests.ServiceAccount, "namespace": manifests.Namespace}}
	for kind, roleKind := range map[string]string{"ClusterRoleBinding": "ClusterRole", "RoleBinding": "Role"} {
		b := byKind[kind]
		ref := b.Object["roleRef"].(map[string]any)
		want := map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": roleKind, "name": byKind[roleKind].GetName()}
		if diff := cmp.Diff(want, ref); diff != "" {
			t.Errorf("%s roleRef (-want +got):\n%s", kind, diff)
		}
		if diff := cmp.Diff(wantSubjects, b.Object["subjects"]); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", kind, diff)
		}
		if kind == "RoleBinding" && b.GetNamespace() != role.GetNamespace() {
			t.Errorf("RoleBinding in %q, Role in %q", b.GetNamespace(), role.GetNamespace())
		}
	}
}

func TestObjectsOrder(t *testing.T) {
	objs, err := manifests.Objects()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+" "+o.GetName())
	}
	want := []string{
		"CustomResourceDefinition metalloadbalancerbgppeers.network.deckhouse.io",
		"CustomResourceDefinition metalloadbalancerclasses.network.deckhouse.io",
		"CustomResourceDefinition metalloadbalancerconfigurations.network.deckhouse.io",
		"CustomResourceDefinition metalloadbalancerpools.network.deckhouse.io",
		"ServiceAccount hostlb",
		"ClusterRole hostlb",
		"ClusterRoleBinding hostlb",
		"Role hostlb-ipam-lease",
		"RoleBinding hostlb-ipam-lease",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Objects() order (-want +got):\n%s", diff)
	}

	// Whatever order the globs come in, CRDs come before RBAC and examples,
	// and a file matched twice appears once.
	objs, err = manifests.Objects("examples/*.yaml", "rbac.yaml", "crds/*.yaml", "crds/metalloadbalancerpools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rank := func(o *unstructured.Unstructured) int {
		switch {
		case o.GetKind() == "CustomResourceDefinition":
			return 0
		case strings.HasPrefix(o.GetAPIVersion(), "rbac.") || o.GetKind() == "ServiceAccount":
			return 1
		default:
			return 2
		}
	}
	if !sort.SliceIsSorted(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) }) {
		t.Error("Objects with globs out of order does not put CRDs, then RBAC, then examples")
	}
	if n := countKind(objs, "CustomResourceDefinition"); n != 4 {
		t.Errorf("%d CRDs, want 4 (a file matched twice must appear once)", n)
	}

	if _, err := manifests.Objects("crd/*.yaml"); err == nil || !strings.Contains(err.Error(), "matches no file") {
		t.Errorf("a glob that matches nothing: err %v", err)
	}
	if _, err := manifests.Objects("[x"); err == nil {
		t.Error("a malformed glob: no error")
	}
}

// decodeStrict decodes o as the API server would, into the typed object of
// its kind, refusing unknown and duplicate fields (case-sensitively): a
// misspelt key (resourceName, loadBalancerclass) would otherwise be dropped
// without a word.
func decodeStrict(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	j, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Strict: true})
	if _, _, err := s.Decode(j, nil, nil); err != nil {
		t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

func loadCRDs(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Objects("crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			t.Fatalf("crds/ holds a %s", o.GetKind())
		}
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		crds[kind] = o
	}
	return crds
}

func schemaOf(t *testing.T, crd *unstructured.Unstructured) map[string]any {
	t.Helper()
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) == 0 {
		t.Fatalf("%s: no versions", crd.GetName())
	}
	s, ok, _ := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema")
	if !ok {
		t.Fatalf("%s: no schema", crd.GetName())
	}
	return s
}

// lookup follows a dotted path of property names through a schema,
// stepping into array items on the way; nil if a step is missing.
func lookup(s map[string]any, path string) map[string]any {
	for _, name := range strings.Split(path, ".") {
		for s != nil && s["type"] == "array" {
			s, _ = s["items"].(map[string]any)
		}
		props, _ := s["properties"].(map[string]any)
		s, _ = props[name].(map[string]any)
		if s == nil {
			return nil
		}
	}
	return s
}

// fieldPaths lists every property path below s, as lookup takes them.
func fieldPaths(s map[string]any, prefix string) []string {
	for s["type"] == "array" {
		s = s["items"].(map[string]any)
	}
	props, _ := s["properties"].(map[string]any)
	var out []string
	for name, sub := range props {
		p := prefix + name
		out = append(out, p)
		out = append(out, fieldPaths(sub.(map[string]any), p+".")...)
	}
	return out
}

// grants flattens the rules of a Role or ClusterRole into sorted
// "group resource verb [names]" lines; "core" is the "" group.
func grants(t *testing.T, role *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, r := range role.Object["rules"].([]any) {
		rule := r.(map[string]any)
		names := ""
		if rn, ok := rule["resourceNames"]; ok {
			names = " " + fmt.Sprint(rn)
		}
		for _, g := range rule["apiGroups"].([]any) {
			if g == "" {
				g = "core"
			}
			for _, res := range rule["resources"].([]any) {
				for _, v := range rule["verbs"].([]any) {
					if v == "*" || res == "*" || g == "*" {
						t.Errorf("%s grants a wildcard: %v", role.GetName(), rule)
					}
					out = append(out, fmt.Sprintf("%s %s %s%s", g, res, v, names))
				}
			}
		}
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func toAny(s []string) any {
	if s == nil {
		return nil
	}
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func countKind(objs []*unstructured.Unstructured, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}
