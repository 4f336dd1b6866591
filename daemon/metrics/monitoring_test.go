package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"
)

// The shipped monitoring files (packaging/monitoring/), checked with the
// pinned promtool (`make tools` builds it; PROMTOOL overrides the path)
// and against a registry filled by the real collectors (populatedWith).
var (
	alertsFile    = filepath.Join("..", "..", "packaging", "monitoring", "prometheus-alerts.yaml")
	dashboardFile = filepath.Join("..", "..", "packaging", "monitoring", "grafana-dashboard.json")
)

// promtool returns the pinned promtool. Without it the test skips, and
// fails under CI, where `make tools` must have built it.
func promtool(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		p = filepath.Join("..", "..", "bin", "tools", "promtool")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found at %s, and CI is set: run `make tools`", p)
		}
		t.Skipf("promtool not found at %s: run `make tools` (or set PROMTOOL)", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func runPromtool(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rulesFile is the part of a Prometheus rule file the checks read.
type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// The alert rules load (`promtool check rules`), each alert fires on the
// series of its fault (`promtool test rules`, testdata/alerts_test.yaml),
// every alert of the issue is there, and each has a runbook.
func TestAlertRules(t *testing.T) {
	out := runPromtool(t, nil, "check", "rules", alertsFile)
	t.Logf("%s", out)
	runPromtool(t, nil, "test", "rules", filepath.Join("testdata", "alerts_test.yaml"))

	var rf rulesFile
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if strings.TrimSpace(r.Annotations["runbook"]) == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no runbook or summary annotation", r.Alert)
			}
			checkNames(t, "alert "+r.Alert, r.Expr)
		}
	}
	for _, want := range []string{
		"HostlbIPWithoutOwner", "HostlbIPUnannounced", "HostlbIPTwoOwners", "HostlbNodeCannotAnnounce",
		"HostlbIPAMPoolNearlyExhausted", "HostlbBGPSessionDown", "HostlbBFDFlapping",
		"HostlbKubeWatchStale", "HostlbConfigReloadFailed",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

// grafanaPanel is the part of a Grafana panel the checks read.
type grafanaPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// Every query of the dashboard parses (promtool, as recording rules) and
// names only metrics the registry has; it has a row for each area.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("dashboard has no title or uid")
	}
	var exprs, rows []string
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				rows = append(rows, p.Title)
			} else if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
				checkNames(t, "panel "+p.Title, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			checkNames(t, "variable "+v.Name, v.Definition)
		}
	}
	for _, want := range []string{"Gossip ring", "Ownership", "Failovers", "ARP and NDP", "BGP and BFD", "IPAM and Kubernetes"} {
		if !slices.Contains(rows, want) {
			t.Errorf("no row %q; rows: %q", want, rows)
		}
	}

	// Grafana's variables replaced by what Prometheus would see.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*", "$job", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(vars.Replace(e)) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d queries: %s", len(exprs), runPromtool(t, nil, "check", "rules", path))
}

var (
	registryNames = map[string]*dto.MetricFamily{}
	// metricRE finds metric names: hostlb's own and the runtime's.
	metricRE = regexp.MustCompile(`\b(?:hostlb|go|process)_[a-z0-9_]+\b`)
)

// checkNames reports every metric name of expr that the registry, filled
// by the real collectors, does not have.
func checkNames(t *testing.T, where, expr string) {
	t.Helper()
	if len(registryNames) == 0 {
		registryNames = gather(t, populatedWith(t, true))
	}
	names := metricRE.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if registryNames[n] != nil {
			continue
		}
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if f := registryNames[base]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
			continue
		}
		t.Errorf("%s: %s is not in the registry (query %q)", where, n, expr)
	}
}

// A scrape passes `promtool check metrics` (its lint, on the exposition
// as a scraper gets it).
func TestScrapePassesPromtool(t *testing.T) {
	m := populatedWith(t, true)
	code, body := get(t, m.Handler(nil), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	out := runPromtool(t, []byte(body), "check", "metrics")
	t.Logf("promtool check metrics: %q", out)
}
