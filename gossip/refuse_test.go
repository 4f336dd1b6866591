package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestRefusedByTellsRefusalFromUnreachable(t *testing.T) {
	for _, tc := range []struct {
		err     string
		refused bool
	}{
		{"failed to join 192.0.2.11:7947: no installed keys could decrypt the message", true},
		{"failed to join 192.0.2.11:7947: EOF", true},
		{"read tcp 192.0.2.13:40000->192.0.2.11:7947: read: connection reset by peer", true},
		{"failed to join 192.0.2.19:7947: dial tcp 192.0.2.19:7947: connect: connection refused", false},
		{"failed to join 192.0.2.19:7947: dial tcp 192.0.2.19:7947: i/o timeout", false},
		{"failed to join 192.0.2.19:7947: dial tcp 192.0.2.19:7947: connect: no route to host", false},
		{"gossiptest: dial 192.0.2.19:7947 from 192.0.2.15:7947: gossiptest: peer unreachable", false},
	} {
		if _, got := refusedBy(errors.New(tc.err)); got != tc.refused {
			t.Errorf("refusedBy(%q) = %v, want %v", tc.err, got, tc.refused)
		}
	}
}

func TestNoteJoins(t *testing.T) {
	r := &Ring{}
	decrypt := errors.New("no installed keys could decrypt the message")
	unreachable := errors.New("dial tcp: connect: connection refused")
	r.noteJoins(true, nil, map[string]error{"192.0.2.11:7947": decrypt, "192.0.2.12:7947": unreachable})
	if why := r.Refused(); !strings.Contains(why, "192.0.2.11:7947") || !strings.Contains(why, "gossip key") {
		t.Errorf("one seed refused, one unreachable: Refused() = %q", why)
	}
	r.noteJoins(true, nil, map[string]error{"192.0.2.11:7947": unreachable})
	if why := r.Refused(); why != "" {
		t.Errorf("every seed unreachable: refused %q, want not (a node alone serves after the wait)", why)
	}
	r.noteJoins(true, []string{"192.0.2.12:7947"}, map[string]error{"192.0.2.11:7947": decrypt})
	if why := r.Refused(); why != "" {
		t.Errorf("one seed took the node: refused %q", why)
	}

	// A name conflict lasts its window.
	now := time.Unix(1000, 0)
	r.refusal.now = func() time.Time { return now }
	r.cfg.NodeName = "n2"
	(*conflicts)(r).NotifyConflict(&memberlist.Node{Name: "n2"}, &memberlist.Node{Name: "n2", Addr: []byte{192, 0, 2, 12}, Port: 7947})
	if why := r.Refused(); !strings.Contains(why, `"n2"`) || !strings.Contains(why, "192.0.2.12:7947") {
		t.Errorf("after a name conflict: Refused() = %q", why)
	}
	now = now.Add(nameConflictFor)
	if why := r.Refused(); why != "" {
		t.Errorf("a minute after the last conflict: still refused %q", why)
	}
	(*conflicts)(r).NotifyConflict(&memberlist.Node{Name: "n7"}, &memberlist.Node{Name: "n7"})
	if why := r.Refused(); why != "" {
		t.Errorf("another node's conflict refused this one: %q", why)
	}
}

// TestRingRefusesAWrongKeyAndATakenName: a node with another key, and one
// with a member's name, are told they are refused; the members are not.
func TestRingRefusesAWrongKeyAndATakenName(t *testing.T) {
	c := newCluster(t, 2, nil)
	eventually(t, 10*time.Second, "n1 and n2 see each other", func() error {
		return seesAlive(c.nodes, []string{"n1", "n2"})
	})
	seed := []string{memAddr(1).String()}
	wrong := c.add(t, 3, seed, func(cfg *Config) { cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{0x17}, KeySize)} })
	eventually(t, 10*time.Second, "the node with another key refused", func() error {
		if why := wrong.ring.Refused(); !strings.Contains(why, "gossip key") {
			return fmt.Errorf("Refused() = %q", why)
		}
		return nil
	})

	tr, err := c.net.NewTransport(memAddr(4))
	if err != nil {
		t.Fatal(err)
	}
	twin := startNode(t, "n2", Config{Transport: tr, Join: seed, SecretKeys: [][]byte{testKey}, Version: "test-1",
		RejoinInterval: 300 * time.Millisecond, LeaveTimeout: 500 * time.Millisecond})
	eventually(t, 10*time.Second, "the second n2 refused", func() error {
		if why := twin.ring.Refused(); !strings.Contains(why, `"n2"`) || !strings.Contains(why, memAddr(2).String()) {
			return fmt.Errorf("Refused() = %q", why)
		}
		return nil
	})
	if why := c.nodes[0].ring.Refused(); why != "" {
		t.Errorf("n1 refused: %q", why)
	}
}
