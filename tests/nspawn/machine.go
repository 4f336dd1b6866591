package nspawn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunDir holds one directory per running container: its overlay, console
// log and the PIDs needed to clean up after a crashed test.
const RunDir = "/var/tmp/hostlb-nspawn"

// NamePrefix starts every machine name and run directory this package makes.
const NamePrefix = "hostlb-"

// Logf receives progress lines; testing.T.Logf fits.
type Logf func(format string, args ...any)

func orDiscard(logf Logf) Logf {
	if logf == nil {
		return func(string, ...any) {}
	}
	return logf
}

// Bind is a host directory made visible in the container.
type Bind struct {
	Host, Container string
	ReadOnly        bool
}

// Options configure [Boot].
type Options struct {
	// Name is the machine (and host) name; default NamePrefix + random.
	Name string
	// Binds are bind-mounted into the container.
	Binds []Bind
	// BootTimeout bounds the wait for the container's systemd to finish
	// booting; default 2 minutes.
	BootTimeout time.Duration
	Logf        Logf
}

// Machine is a booted container. Its methods are safe for concurrent use.
type Machine struct {
	Name string
	// Root is the container's / as seen from the host (an overlay on the
	// cached rootfs); files written here appear in the container.
	Root string

	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the nspawn process has been reaped
	leader int           // PID of the container's systemd, in our PID namespace
	logf   Logf

	closeOnce sync.Once
	closeErr  error
}

// Available reports what this host lacks to boot containers, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (systemd-nspawn, overlay mounts)")
	}
	var missing []string
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (apt-get install systemd-container debootstrap util-linux)",
			strings.Join(missing, ", "))
	}
	return nil
}

// Boot starts a container from the cached rootfs (building it if needed)
// and returns once its systemd reports the boot finished ("running", or
// "degraded", which a minimal container may well be). The caller must Close
// the machine.
func Boot(ctx context.Context, opts Options) (*Machine, error) {
	logf := orDiscard(opts.Logf)
	if err := Available(); err != nil {
		return nil, err
	}
	CleanStale(logf)
	lower, err := Rootfs(ctx, logf)
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = NamePrefix + randomSuffix()
	}
	dir := filepath.Join(RunDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	m := &Machine{Name: name, Root: filepath.Join(dir, "root"), dir: dir,
		exited: make(chan struct{}), logf: logf}
	if err := writeOwner(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := mountOverlay(lower, dir); err != nil {
		_ = removeRunDir(dir)
		return nil, err
	}
	if err := m.start(opts); err != nil {
		_ = m.Close()
		return nil, err
	}
	timeout := opts.BootTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if err := m.waitBooted(ctx, timeout); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// nspawnArgs are the systemd-nspawn options common to Boot and Exec.
func nspawnArgs(root, name string, binds []Bind) []string {
	args := []string{
		"--directory=" + root,
		"--machine=" + name,
		"--register=no",     // no systemd-machined needed on the host
		"--private-network", // the container sees only its own lo
		"--link-journal=no",
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		// The host's PID 1 is not systemd (a CI container, say): there is
		// nobody to create a transient scope, so run in our own cgroup.
		args = append(args, "--keep-unit")
	}
	for _, b := range binds {
		flag := "--bind="
		if b.ReadOnly {
			flag = "--bind-ro="
		}
		args = append(args, flag+b.Host+":"+b.Container)
	}
	return args
}

// Exec runs one command in a fresh container that does not boot: no
// systemd runs in it, as in a chroot or a Docker build. Its changes are
// discarded. It returns the command's combined output.
func Exec(ctx context.Context, opts Options, command ...string) (string, error) {
	logf := orDiscard(opts.Logf)
	if err := Available(); err != nil {
		return "", err
	}
	CleanStale(logf)
	lower, err := Rootfs(ctx, logf)
	if err != nil {
		return "", err
	}
	name := opts.Name
	if name == "" {
		name = NamePrefix + randomSuffix()
	}
	dir := filepath.Join(RunDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	defer func() {
		if err := removeRunDir(dir); err != nil {
			logf("nspawn: %v", err)
		}
	}()
	if err := writeOwner(dir); err != nil {
		return "", err
	}
	if err := mountOverlay(lower, dir); err != nil {
		return "", err
	}
	args := append(nspawnArgs(filepath.Join(dir, "root"), name, opts.Binds), "--quiet", "--console=pipe", "--")
	cmd := exec.CommandContext(ctx, "systemd-nspawn", append(args, command...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemd-nspawn %s: %w", strings.Join(command, " "), err)
	}
	return string(out), nil
}

func (m *Machine) start(opts Options) error {
	args := append(nspawnArgs(m.Root, m.Name, opts.Binds),
		"--boot",
		"--console=pipe", // boot messages go to console.log
	)
	console, err := os.Create(filepath.Join(m.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("create console log: %w", err)
	}
	defer console.Close()
	m.cmd = exec.Command("systemd-nspawn", args...)
	m.cmd.Stdin = nil // /dev/null
	m.cmd.Stdout = console
	m.cmd.Stderr = console
	// If the test process dies, nspawn powers the container off; the run
	// directory is then removed by the next Boot (CleanStale).
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	m.logf("nspawn: booting %s", m.Name)
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start systemd-nspawn: %w", err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	pid := m.cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(m.dir, "nspawn.pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("record nspawn pid: %w", err)
	}
	return nil
}

// waitBooted finds the container's init and waits for
// `systemctl is-system-running --wait`.
func (m *Machine) waitBooted(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var lastErr error
	for {
		select {
		case <-m.exited:
			return fmt.Errorf("systemd-nspawn exited during boot; console:\n%s", m.ConsoleTail(40))
		case <-ctx.Done():
			return fmt.Errorf("container %s did not finish booting in %s (last: %w); console:\n%s",
				m.Name, timeout, lastErr, m.ConsoleTail(40))
		default:
		}
		if m.leader == 0 {
			m.leader = findChild(m.cmd.Process.Pid, "systemd")
		}
		if m.leader != 0 {
			out, err := m.Run(ctx, "systemctl", "is-system-running", "--wait")
			state := strings.TrimSpace(out)
			switch state {
			case "running", "degraded":
				m.logf("nspawn: %s booted in %s (%s)", m.Name, time.Since(start).Round(10*time.Millisecond), state)
				if state == "degraded" {
					failed, _ := m.Run(ctx, "systemctl", "--failed", "--no-legend", "--plain")
					m.logf("nspawn: failed units (tolerated): %s", strings.TrimSpace(failed))
				}
				return nil
			}
			lastErr = fmt.Errorf("is-system-running: %q: %w", state, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-m.exited:
		case <-ctx.Done():
		}
	}
}

// Leader is the PID, in the host's PID namespace, of the container's
// systemd: `nsenter -t PID -a CMD` runs CMD in the container.
func (m *Machine) Leader() int { return m.leader }

// Run runs a command in the container (all its namespaces, via nsenter) and
// returns its standard output. A non-zero exit is an error that carries the
// exit code (see [ExitCode]) and standard error.
func (m *Machine) Run(ctx context.Context, args ...string) (string, error) {
	return m.RunInput(ctx, nil, args...)
}

// RunInput is Run with stdin.
func (m *Machine) RunInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	if m.leader == 0 {
		return "", errors.New("container not booted")
	}
	nsArgs := append([]string{"--target", strconv.Itoa(m.leader), "--all", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsArgs...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=dumb", "HOME=/root",
		"SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "DEBIAN_FRONTEND=noninteractive",
	}
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), &RunError{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// Sh runs a shell script in the container.
func (m *Machine) Sh(ctx context.Context, script string) (string, error) {
	return m.Run(ctx, "sh", "-ec", script)
}

// RunError is a command that failed in the container.
type RunError struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *RunError) Unwrap() error { return e.Err }

// ExitCode is the exit code of a command that Run reported as failed, 0 for
// nil, and -1 when the command did not run to an exit.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// ConsoleTail returns the last n lines the container wrote to its console.
func (m *Machine) ConsoleTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "console.log"))
	return tail(string(b), n)
}

// Close powers the container off (SIGTERM to nspawn makes it ask the
// container's systemd for an orderly shutdown), kills it if that takes too
// long, and removes the overlay. Safe to call more than once.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() {
		if m.cmd != nil && m.cmd.Process != nil {
			start := time.Now()
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(30 * time.Second):
				m.logf("nspawn: %s did not power off in 30s; killing it", m.Name)
				_ = m.cmd.Process.Kill()
				<-m.exited
			}
			m.logf("nspawn: %s powered off in %s", m.Name, time.Since(start).Round(10*time.Millisecond))
		}
		m.closeErr = removeRunDir(m.dir)
	})
	return m.closeErr
}

// CleanStale removes run directories whose owning process is gone: it kills
// their nspawn (checked by its command line, so a reused PID is left alone),
// unmounts the overlay and deletes the directory. Directories of live
// processes, e.g. a test running in parallel, are left alone.
func CleanStale(logf Logf) {
	logf = orDiscard(logf)
	entries, err := os.ReadDir(RunDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), NamePrefix) {
			continue
		}
		dir := filepath.Join(RunDir, e.Name())
		if ownerAlive(dir) {
			continue
		}
		logf("nspawn: cleaning up %s, left by a test that did not finish", dir)
		if b, err := os.ReadFile(filepath.Join(dir, "nspawn.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if pid > 0 && bytes.Contains(cmdline, []byte(filepath.Join(dir, "root"))) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(pid, 10*time.Second)
			}
		}
		if err := removeRunDir(dir); err != nil {
			logf("nspawn: %v", err)
		}
	}
}

// writeOwner records which process owns a run directory: PID and start time
// (so that a reused PID does not look like the owner).
func writeOwner(dir string) error {
	pid := os.Getpid()
	owner := fmt.Sprintf("%d %s\n", pid, procStartTime(pid))
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(owner), 0o644); err != nil {
		return fmt.Errorf("record run dir owner: %w", err)
	}
	return nil
}

func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil {
		// No owner yet: maybe being created right now. Only old ones are stale.
		fi, err := os.Stat(dir)
		return err == nil && time.Since(fi.ModTime()) < time.Minute
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, _ := strconv.Atoi(f[0])
	return pid > 0 && procStartTime(pid) == f[1]
}

// procStartTime is field 22 of /proc/PID/stat, or "" if there is no such process.
func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// comm (field 2) may contain spaces; fields after it start past the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// findChild returns the PID of a child of parent whose comm is name, or 0.
func findChild(parent int, name string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 || s[open+1:closing] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == parent {
			return pid
		}
	}
	return 0
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a foreign process; nothing to wait on
	}
}

func mountOverlay(lower, dir string) error {
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create overlay dirs: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		lower, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	err := syscall.Mount("overlay", filepath.Join(dir, "root"), "overlay", 0, opts)
	if err == nil {
		return nil
	}
	// Some file systems cannot be an overlay's upper layer: copy instead.
	out, cpErr := exec.Command("cp", "-a", "--reflink=auto", lower+"/.", filepath.Join(dir, "root")).CombinedOutput()
	if cpErr != nil {
		return fmt.Errorf("overlay mount (%w) and copy of the rootfs (%w: %s) both failed", err, cpErr, out)
	}
	return nil
}

// removeRunDir unmounts the overlay, if mounted, and deletes the directory.
// It refuses to delete while something is still mounted, so it never
// recurses into the cached rootfs.
func removeRunDir(dir string) error {
	root := filepath.Join(dir, "root")
	if isMountPoint(root) {
		if err := syscall.Unmount(root, 0); err != nil {
			if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", root, err)
			}
		}
	}
	if isMountPoint(root) {
		return fmt.Errorf("%s is still mounted; not removing %s", root, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
