// Package cpuload puts a test process under CPU load for the false-positive
// benchmarks (gossip, heartbeat): busy child processes, which the kernel
// schedules beside the process (a node's other workloads), and busy
// goroutines inside it (load in the daemon's own Go scheduler).
//
// A test package that uses Start calls RunChild first thing in its
// TestMain: the children are the test binary itself, re-executed with
// an environment variable that makes it spin forever.
package cpuload

import (
	"os"
	"os/exec"
	"sync"
	"testing"
)

// childEnv makes a test binary a CPU burner (RunChild).
const childEnv = "HOSTLB_TEST_SPIN"

// RunChild spins forever when this process is a child started by Start,
// and returns at once otherwise.
func RunChild() {
	if os.Getenv(childEnv) == "" {
		return
	}
	spin(nil)
}

// spin burns CPU until stop is closed (never, for nil).
func spin(stop <-chan struct{}) {
	x := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		for range 1000 {
			x = x*31 + 7
		}
	}
}

// Start runs procs busy child processes and spinners busy goroutines until
// the returned function is called, which stops them all and waits for them.
func Start(tb testing.TB, procs, spinners int) (stop func()) {
	tb.Helper()
	var children []*exec.Cmd
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		if err := cmd.Start(); err != nil {
			for _, c := range children {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
			tb.Fatalf("start CPU burner: %v", err)
		}
		children = append(children, cmd)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range spinners {
		wg.Go(func() { spin(done) })
	}
	return func() {
		close(done)
		wg.Wait()
		for _, c := range children {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}
