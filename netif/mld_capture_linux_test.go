//go:build linux

package netif

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// This file holds what the MLD lab tests need to see reports on the wire:
// a tcpdump capture streamed as pcap into the test, and a decoder for
// MLDv2 reports (RFC 3810 §5.2) that walks the IPv6 extension headers.

// MLDv2 multicast address record types (RFC 3810 §5.2.12).
const (
	mldModeIsInclude   = 1
	mldModeIsExclude   = 2
	mldChangeToInclude = 3 // with no sources: the listener left (§6.1)
	mldChangeToExclude = 4 // with no sources: the listener joined (§6.1)
)

const icmpTypeMLDv2Report = 143

type mldRecord struct {
	Type    int
	Group   netip.Addr
	Sources int
}

// mldReport is one decoded MLDv2 Report.
type mldReport struct {
	EthSrc      net.HardwareAddr
	Src, Dst    netip.Addr
	HopLimit    int
	RouterAlert bool // Hop-by-Hop Router Alert option (RFC 2711), required by §5
	Records     []mldRecord
}

var errNotMLDv2Report = errors.New("not an MLDv2 report")

// parseMLDv2Report decodes an Ethernet frame carrying an MLDv2 Report. It
// checks every length against the frame and returns errNotMLDv2Report for
// any other well-formed frame.
func parseMLDv2Report(f []byte) (*mldReport, error) {
	if len(f) < 14+40 {
		return nil, errNotMLDv2Report
	}
	if binary.BigEndian.Uint16(f[12:14]) != 0x86dd {
		return nil, errNotMLDv2Report
	}
	ip := f[14:]
	if ip[0]>>4 != 6 {
		return nil, fmt.Errorf("IPv6 version %d", ip[0]>>4)
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if 40+plen > len(ip) {
		return nil, fmt.Errorf("payload length %d, frame has %d", plen, len(ip)-40)
	}
	r := &mldReport{EthSrc: net.HardwareAddr(f[6:12]), HopLimit: int(ip[7]),
		Src: netip.AddrFrom16([16]byte(ip[8:24])), Dst: netip.AddrFrom16([16]byte(ip[24:40]))}
	next, p := ip[6], ip[40:40+plen]
	// Extension headers that may precede ICMPv6 (RFC 8200 §4): Hop-by-Hop,
	// Routing and Destination Options all have the same length encoding.
	for next == 0 || next == 43 || next == 60 {
		if len(p) < 8 || len(p) < (int(p[1])+1)*8 {
			return nil, fmt.Errorf("truncated extension header %d", next)
		}
		hl := (int(p[1]) + 1) * 8
		if next == 0 {
			r.RouterAlert = hasRouterAlert(p[2:hl])
		}
		next, p = p[0], p[hl:]
	}
	if next != 58 || len(p) < 8 || p[0] != icmpTypeMLDv2Report {
		return nil, errNotMLDv2Report
	}
	n := int(binary.BigEndian.Uint16(p[6:8]))
	p = p[8:]
	for i := range n {
		if len(p) < 20 {
			return nil, fmt.Errorf("record %d of %d truncated", i+1, n)
		}
		rec := mldRecord{Type: int(p[0]), Sources: int(binary.BigEndian.Uint16(p[2:4])),
			Group: netip.AddrFrom16([16]byte(p[4:20]))}
		l := 20 + 16*rec.Sources + 4*int(p[1])
		if len(p) < l {
			return nil, fmt.Errorf("record %d of %d truncated", i+1, n)
		}
		r.Records = append(r.Records, rec)
		p = p[l:]
	}
	return r, nil
}

// hasRouterAlert looks for option type 5 (Router Alert, RFC 2711) in the
// options area of a Hop-by-Hop header.
func hasRouterAlert(opts []byte) bool {
	for len(opts) > 0 {
		if opts[0] == 0 { // Pad1
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return false
		}
		if opts[0] == 5 {
			return true
		}
		opts = opts[2+int(opts[1]):]
	}
	return false
}

// capture is tcpdump running in a namespace, its packets streamed to the
// test: no file, no polling, and the test sees each frame as it is taken.
type capture struct {
	frames chan []byte
	stop   func()
}

// startCapture runs tcpdump on ifname in ns with a BPF filter and returns
// once it is capturing. It is stopped when the test ends.
func startCapture(t *testing.T, ns *netlab.NS, ifname, filter string) *capture {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// -U: a frame is written as soon as it is taken. -Z root: no privilege
	// drop to a "tcpdump" user that may not exist.
	cmd := ns.Command(ctx, "tcpdump", "-i", ifname, "-n", "-U", "-Z", "root", "-w", "-", filter)
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start tcpdump: %v", err)
	}
	_ = outW.Close()
	_ = errW.Close()

	c := &capture{frames: make(chan []byte, 4096)}
	var wg sync.WaitGroup
	var stderr strings.Builder // written by the stderr reader until it returns
	ready, stderrDone := make(chan struct{}), make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(stderrDone)
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		seen := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !seen && strings.Contains(sc.Text(), "listening on") {
				seen = true
				close(ready)
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer outR.Close()
		defer close(c.frames)
		_ = readPcap(outR, func(f []byte) bool {
			select {
			case c.frames <- f:
				return true
			case <-done:
				return false
			}
		})
	}()
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			close(done)
			cancel()
			_ = cmd.Wait()
			wg.Wait()
		})
	}
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-stderrDone:
		c.stop()
		t.Fatalf("tcpdump on %s exited:\n%s", ifname, stderr.String())
	case <-time.After(10 * time.Second):
		c.stop()
		t.Fatalf("tcpdump on %s is not capturing after 10 s:\n%s", ifname, stderr.String())
	}
	return c
}

// readPcap calls fn with every frame of a pcap stream (libpcap format,
// Ethernet link type) until the stream ends or fn returns false.
func readPcap(r io.Reader, fn func([]byte) bool) error {
	br := bufio.NewReader(r)
	var gh [24]byte
	if _, err := io.ReadFull(br, gh[:]); err != nil {
		return fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	switch m := binary.LittleEndian.Uint32(gh[0:4]); m {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return fmt.Errorf("pcap magic %#x", m)
	}
	if lt := bo.Uint32(gh[20:24]) & 0xffff; lt != 1 {
		return fmt.Errorf("pcap link type %d, want Ethernet (1)", lt)
	}
	for {
		var rh [16]byte
		if _, err := io.ReadFull(br, rh[:]); err != nil {
			return err
		}
		n := bo.Uint32(rh[8:12])
		if n > 1<<18 {
			return fmt.Errorf("pcap record of %d bytes", n)
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(br, f); err != nil {
			return err
		}
		if !fn(f) {
			return nil
		}
	}
}

// waitReport returns the first MLDv2 report from mac that has a record for
// group of one of the types, failing the test after 10 s. Reports that do
// not match are skipped (the kernel reports its own groups too).
func (c *capture) waitReport(t *testing.T, mac net.HardwareAddr, group netip.Addr, types ...int) (*mldReport, mldRecord) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("capture ended; reports seen:\n%s", strings.Join(seen, "\n"))
			}
			r, err := parseMLDv2Report(f)
			if errors.Is(err, errNotMLDv2Report) {
				continue
			}
			if err != nil {
				t.Fatalf("malformed MLDv2 report: %v: % x", err, f)
			}
			seen = append(seen, fmt.Sprintf("  from %v (%v): %+v", r.EthSrc, r.Src, r.Records))
			if !sameMAC(r.EthSrc, mac) {
				continue
			}
			for _, rec := range r.Records {
				if rec.Group == group && containsInt(types, rec.Type) {
					return r, rec
				}
			}
		case <-deadline:
			t.Fatalf("no MLDv2 report from %v for %v (record types %v) within 10 s; reports seen:\n%s",
				mac, group, types, strings.Join(seen, "\n"))
		}
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// mldFilter matches MLDv2 reports as the kernel sends them: to ff02::16
// (all MLDv2-capable routers). The ICMPv6 type sits behind a Hop-by-Hop
// header, which BPF cannot walk; the decoder checks it.
const mldFilter = "ip6 dst ff02::16"

// igmp6Groups lists the IPv6 groups the kernel of ns has joined on ifname
// (/proc/net/igmp6 shows the namespace of the reader).
func igmp6Groups(t *testing.T, ns *netlab.NS, ifname string) map[netip.Addr]bool {
	t.Helper()
	out := ns.MustRun("cat", "/proc/net/igmp6")
	groups := map[netip.Addr]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != ifname || len(f[2]) != 32 {
			continue
		}
		var b [16]byte
		for i := range b {
			if _, err := fmt.Sscanf(f[2][2*i:2*i+2], "%02x", &b[i]); err != nil {
				t.Fatalf("/proc/net/igmp6 line %q: %v", line, err)
			}
		}
		groups[netip.AddrFrom16(b)] = true
	}
	return groups
}

// listenNDPIn opens ListenNDP for link inside its namespace.
func listenNDPIn(t *testing.T, link *netlab.Link) PacketConn {
	t.Helper()
	var conn PacketConn
	if err := link.NS.Do(func() error {
		ifi, err := net.InterfaceByName(link.Name)
		if err != nil {
			return err
		}
		conn, err = ListenNDP(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// runNDP starts an NDP responder on link's ListenNDP conn until the test
// ends (or it is closed earlier). synced waits until its MLD worker has
// applied the last change.
func runNDP(t *testing.T, link *netlab.Link) (r *NDPResponder, synced func()) {
	t.Helper()
	r = NewNDPResponder(listenNDPIn(t, link), ResponderConfig{Ifindex: link.Index, Ifname: link.Name,
		HardwareAddr: link.MAC, Logger: testLogger(t)})
	ch := make(chan struct{}, 1024)
	r.mldSynced = ch
	synced = func() {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("MLD worker on %s did not sync within 30 s", link.Name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run on %s: %v", link.Name, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close on %s: %v", link.Name, err)
		}
	})
	return r, synced
}
