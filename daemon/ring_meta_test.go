package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
)

// --check-config refuses labels the gossip metadata cannot carry, and only
// them: failing health checks no longer ride in the metadata, so a config
// with 10,000 health-checked VIPs fits whatever their names.
func TestCheckRingMetaRejectsOnlyLabelsThatDoNotFit(t *testing.T) {
	cfg := config.Default()
	cfg.Node.Labels = map[string]string{"rack": "a1", "zone": "z"}
	for i := range 10000 {
		cfg.VIPs = append(cfg.VIPs, config.VIP{Name: fmt.Sprintf("a-rather-long-vip-name-%05d", i), Mode: config.ModeL2,
			Addresses: addrs("2001:db8:10::", 1), Health: &config.Health{TCP: "192.0.2.1:80", Interval: time.Second, Timeout: time.Second}})
	}
	if err := CheckRingMeta(cfg); err != nil {
		t.Errorf("small labels, 10,000 health-checked VIPs: %v", err)
	}
	for i := range 20 {
		cfg.Node.Labels[fmt.Sprintf("label-%02d", i)] = strings.Repeat("v", 40)
	}
	err := CheckRingMeta(cfg)
	if err == nil || !strings.Contains(err.Error(), "node.labels") || !strings.Contains(err.Error(), "512") {
		t.Errorf("labels of ~1 KB: %v, want an error naming node.labels and the 512-byte limit", err)
	}
}
