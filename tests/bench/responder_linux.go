//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/hostlb/hostlb/netif"
)

// The environment that turns a process into the hostlb side of the lab (see
// ResponderMain). The benchmark re-executes its own test binary with it
// inside the hostlb node's namespace.
const (
	EnvResponder = "HOSTLB_BENCH_RESPONDER" // "arp" or "ndp"
	EnvIface     = "HOSTLB_BENCH_IFACE"     // the interface to answer on
	EnvVIPs      = "HOSTLB_BENCH_VIPS"      // a file with one owned address a line
	EnvProfile   = "HOSTLB_BENCH_CPUPROFILE"
)

// ReadyLine is what ResponderMain prints once it answers.
const ReadyLine = "ready"

// IsResponderProcess reports whether this process was started to be the
// hostlb side of the lab.
func IsResponderProcess() bool { return os.Getenv(EnvResponder) != "" }

// ResponderMain answers ARP or NDP for the VIPs in $HOSTLB_BENCH_VIPS on
// $HOSTLB_BENCH_IFACE with netif's responder, built exactly as hostlbd
// builds it, until stdin is closed. It prints ReadyLine once the socket is
// open and the VIPs are owned, and at the end one line of JSON with the
// responder's counters. With $HOSTLB_BENCH_CPUPROFILE set it writes a CPU
// profile there. It returns the process exit code.
func ResponderMain(stdin io.Reader, stdout, stderr io.Writer) int {
	if err := respond(stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "bench responder: %v\n", err)
		return 1
	}
	return 0
}

func respond(stdin io.Reader, stdout io.Writer) error {
	proto := Proto(os.Getenv(EnvResponder))
	ifi, err := net.InterfaceByName(os.Getenv(EnvIface))
	if err != nil {
		return fmt.Errorf("look up interface: %w", err)
	}
	vips, err := readVIPs(os.Getenv(EnvVIPs))
	if err != nil {
		return err
	}
	cfg := netif.ResponderConfig{Ifindex: ifi.Index, Ifname: ifi.Name, HardwareAddr: ifi.HardwareAddr}
	var r netif.Responder
	switch proto {
	case ARP:
		conn, err := netif.ListenARP(ifi)
		if err != nil {
			return err
		}
		r = netif.NewARPResponder(conn, cfg)
	case NDP:
		conn, err := netif.ListenNDP(ifi)
		if err != nil {
			return err
		}
		r = netif.NewNDPResponder(conn, cfg)
	default:
		return fmt.Errorf("unknown protocol %q", proto)
	}
	defer r.Close()
	if err := r.SetOwned(vips); err != nil {
		return fmt.Errorf("own %d VIPs: %w", len(vips), err)
	}
	if path := os.Getenv(EnvProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	if _, err := fmt.Fprintln(stdout, ReadyLine); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	// The parent closes our stdin to stop us (and so does its death).
	_, _ = io.Copy(io.Discard, stdin)
	cancel()
	if err := <-runErr; err != nil {
		return fmt.Errorf("run responder: %w", err)
	}
	if err := json.NewEncoder(stdout).Encode(r.Stats()); err != nil {
		return fmt.Errorf("report stats: %w", err)
	}
	return nil
}

func readVIPs(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read VIPs: %w", err)
	}
	defer f.Close()
	var vips []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		a, err := netip.ParseAddr(line)
		if err != nil {
			return nil, fmt.Errorf("read VIPs from %s: %w", path, err)
		}
		vips = append(vips, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read VIPs from %s: %w", path, err)
	}
	if len(vips) == 0 {
		return nil, errors.New("read VIPs: none")
	}
	return vips, nil
}
