package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
)

// State on every node agrees with who announces each IP (the ledger of the
// fake outputs), explains the nodes that do not, and after a crash shows
// the new owner, the old one and when it changed.
func TestSimState(t *testing.T) {
	s := newSimFull(t, 3, false, nil, []config.VIP{
		{Name: "rack0", Mode: config.ModeL2, Addresses: addrs("192.0.2.40", 1), NodeSelector: map[string]string{"rack": "r0"}},
	}, nil)

	agree := func(running []string) error {
		owners := s.ledger.owners()
		var errs []error
		for _, name := range running {
			s.mu.Lock()
			nd := s.running[name]
			s.mu.Unlock()
			st := nd.d.State()
			if st.Node != name || !st.Ready || !st.Joined || st.LastPass.IsZero() {
				errs = append(errs, fmt.Errorf("%s: node %q ready %v joined %v last pass %v", name, st.Node, st.Ready, st.Joined, st.LastPass))
			}
			// A crashed member stays listed, dead.
			if len(st.Members) != 3 {
				errs = append(errs, fmt.Errorf("%s: %d members, want 3", name, len(st.Members)))
			}
			if len(st.IPs) != len(owners) {
				errs = append(errs, fmt.Errorf("%s: %d IPs, want %d", name, len(st.IPs), len(owners)))
			}
			for _, ip := range st.IPs {
				if want := owners[ip.Addr]; !slices.Equal(ip.Owners, want) || !slices.Equal(ip.Announcers, want) {
					errs = append(errs, fmt.Errorf("%s: %s owners %v announcers %v, the wire says %v", name, ip.Addr, ip.Owners, ip.Announcers, want))
				}
				if ip.Here != slices.Contains(ip.Owners, name) || ip.Since.IsZero() {
					errs = append(errs, fmt.Errorf("%s: %s here %v since %v", name, ip.Addr, ip.Here, ip.Since))
				}
				if len(ip.NotHere) != len(st.Members)-len(ip.Owners) {
					errs = append(errs, fmt.Errorf("%s: %s reasons %v", name, ip.Addr, ip.NotHere))
				}
			}
		}
		return errors.Join(errs...)
	}
	s.waitFor(5*time.Second, "State agrees with the wire", func() error { return agree([]string{"n1", "n2", "n3"}) })

	// rack0 selects the nodes labelled rack=r0: n2 only (labels r(i%2)).
	st := s.running["n1"].d.State()
	i := slices.IndexFunc(st.IPs, func(ip IPState) bool { return ip.Name == "rack0" })
	if i < 0 {
		t.Fatal("rack0 not in State")
	}
	rack0 := st.IPs[i]
	if !slices.Equal(rack0.Owners, []string{"n2"}) {
		t.Fatalf("rack0 owners %v, want n2", rack0.Owners)
	}
	for _, r := range rack0.NotHere {
		if !strings.Contains(r.Reason, "node_selector {rack=r0}") {
			t.Errorf("%s does not announce rack0 because %q; want the selector named", r.Node, r.Reason)
		}
	}

	// A crash: the IPs of the dead node move; State says from whom and when.
	var victim netip.Addr
	for _, ip := range st.IPs {
		if ip.Name == "web" && slices.Equal(ip.Owners, []string{"n3"}) {
			victim = ip.Addr
			break
		}
	}
	if !victim.IsValid() {
		t.Fatalf("n3 owns no web IP: %+v", st.IPs)
	}
	crashed := time.Now()
	s.crash("n3")
	s.waitFor(10*time.Second, "State after the crash", func() error {
		if err := agree([]string{"n1", "n2"}); err != nil {
			return err
		}
		for _, ip := range s.running["n1"].d.State().IPs {
			if ip.Addr != victim {
				continue
			}
			if !slices.Equal(ip.PrevOwners, []string{"n3"}) || ip.Since.Before(crashed) {
				return fmt.Errorf("%s: previous owners %v since %v, want n3 after %v", ip.Addr, ip.PrevOwners, ip.Since, crashed)
			}
			for _, r := range ip.NotHere {
				if r.Node == "n3" && r.Reason != "dead" {
					return fmt.Errorf("n3 does not announce %s because %q, want dead", ip.Addr, r.Reason)
				}
			}
		}
		return nil
	})
}
