package bgplab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/netlab"
)

// killStale kills what a crashed earlier run left in its namespaces, by
// PID, before netlab removes those namespaces.
func killStale() error { return failover.KillStale() }

// Proc is one process the lab started in a namespace with `ip netns exec`,
// which execs the program: Proc's PID is the program's.
type Proc struct {
	Name    string // for messages: "bird", "node1 hostlbd"
	LogPath string // stdout and stderr

	cmd    *exec.Cmd
	done   chan struct{}
	err    error     // Wait's result, set before done closes
	exited time.Time // when Wait returned, set before done closes
}

// startProc starts argv in ns with env added to the test's environment,
// its output in logPath, and kills it with SIGKILL when t ends if it
// still runs.
func startProc(t testing.TB, ns *netlab.NS, name, logPath string, env []string, argv ...string) *Proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: name, LogPath: logPath, done: make(chan struct{})}
	// Not CommandContext: daemons are stopped by signals, by PID.
	p.cmd = ns.Command(context.Background(), argv...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("bgplab: start %s in %s: %v", name, ns.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exited = time.Now()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill() })
	return p
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited is when the process was seen to exit; zero while it runs.
func (p *Proc) Exited() time.Time {
	if p.Running() {
		return time.Time{}
	}
	return p.exited
}

// Signal sends sig to the process unless it has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return fmt.Errorf("%s (pid %d): %w", p.Name, p.PID(), errors.Join(errExited, p.err))
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID(), err)
	}
	return nil
}

// errExited is Signal's error when the process has exited.
var errExited = errors.New("has exited")

// errStillRunning is Wait's error when the process did not exit in time.
var errStillRunning = errors.New("still running")

// Kill sends SIGKILL and waits for the exit; it is idempotent.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Wait waits up to d for the exit and returns its error (nil for status
// 0), or an error saying it still runs.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) after %v: %w", p.Name, p.PID(), d, errStillRunning)
	}
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(b)
}
