package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fileInfo is an fs.FileInfo with a chosen type, mode, size and owner.
type fileInfo struct {
	mode fs.FileMode
	size int64
	uid  uint32
}

func (f fileInfo) Name() string       { return "f" }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid} }

func TestCheckSecret(t *testing.T) {
	const name = "/etc/hostlb/gossip.key"
	owner := func(uid uint32) bool { return uid == 0 || uid == 990 }
	for _, tc := range []struct {
		name string
		fi   fileInfo
		msg  string // "" = accepted
	}{
		{"root 0640", fileInfo{mode: 0o640, size: 45}, ""},
		{"root 0600", fileInfo{mode: 0o600, size: 45}, ""},
		{"daemon user 0400", fileInfo{mode: 0o400, size: 45, uid: 990}, ""},
		{"group writable is the group's business", fileInfo{mode: 0o660, size: 45}, ""},
		{"at the limit", fileInfo{mode: 0o640, size: KeyFileLimit}, ""},
		{"world-readable", fileInfo{mode: 0o644, size: 45},
			name + " has mode 0644: readable by every user (fix: chmod 0640 " + name + ")"},
		{"0666", fileInfo{mode: 0o666, size: 45},
			name + " has mode 0666: readable and writable by every user (fix: chmod 0640 " + name + ")"},
		{"world-writable only", fileInfo{mode: 0o602, size: 45},
			name + " has mode 0602: writable by every user (fix: chmod 0640 " + name + ")"},
		{"another owner", fileInfo{mode: 0o640, size: 45, uid: 65534},
			name + " is owned by uid 65534, not by root or the daemon's user (fix: chown root:hostlb " + name + ")"},
		{"another owner and 0666", fileInfo{mode: 0o666, size: 45, uid: 1000},
			name + " is owned by uid 1000, not by root or the daemon's user and has mode 0666: readable and writable by every user " +
				"(fix: chown root:hostlb " + name + "; chmod 0640 " + name + ")"},
		{"FIFO", fileInfo{mode: fs.ModeNamedPipe | 0o600},
			name + " is a FIFO, not a regular file (fix: replace it with a regular file: rm " + name},
		{"device", fileInfo{mode: fs.ModeDevice | fs.ModeCharDevice | 0o666},
			name + " is a device, not a regular file"},
		{"directory", fileInfo{mode: fs.ModeDir | 0o750}, name + " is a directory, not a regular file"},
		{"socket", fileInfo{mode: fs.ModeSocket | 0o600}, name + " is a socket, not a regular file"},
		{"too large", fileInfo{mode: 0o640, size: KeyFileLimit + 1},
			name + " is 65537 bytes, more than the 64 KiB this file may hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSecret(name, tc.fi, KeyFileLimit, owner)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *SecretFileError
			if !errors.As(err, &se) || se.Path != name {
				t.Fatalf("got %v, want a *SecretFileError for %s", err, name)
			}
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("error\n%q\ndoes not start with\n%q", err, tc.msg)
			}
		})
	}
}

func TestTooLargeUnits(t *testing.T) {
	for limit, want := range map[int64]string{KeyFileLimit: "64 KiB", KubeconfigLimit: "4 MiB", 80: "80 bytes"} {
		if err := tooLarge("f", limit+1, limit); !strings.Contains(err.Error(), "more than the "+want+" ") {
			t.Errorf("limit %d: %v does not say %q", limit, err, want)
		}
	}
}

// requireRootOrCI skips a test that needs root, unless CI is set: then it
// fails (SPEC §9).
func requireRootOrCI(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (chown to another uid), and CI is set")
	}
	t.Skip("needs root to chown a file to another uid; run as root (CI does)")
}

// loadWithKey writes a config naming key (relative to dir) and loads it
// with the real, checked reader, in a goroutine so that a hang fails the
// test instead of stalling it.
func loadWithKey(t *testing.T, dir string) error {
	t.Helper()
	conf := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(conf, []byte("[node]\nname = \"n1\"\n[gossip]\nsecret_key_file = \"gossip.key\"\n[kubernetes]\nenabled = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(conf)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Load hangs")
		return nil
	}
}

func TestSecretKeyFileRealFiles(t *testing.T) {
	writeKey := func(t *testing.T, dir, content string, mode fs.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, "gossip.key")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // beyond the umask
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the key path
		msg   string                                // after the path; "" = accepted
	}{
		{"0640 accepted", func(t *testing.T, dir string) string { return writeKey(t, dir, b64Key+"\n", 0o640) }, ""},
		{"0666", func(t *testing.T, dir string) string { return writeKey(t, dir, b64Key+"\n", 0o666) },
			" has mode 0666: readable and writable by every user (fix: chmod 0640 "},
		{"0644", func(t *testing.T, dir string) string { return writeKey(t, dir, b64Key+"\n", 0o644) },
			" has mode 0644: readable by every user (fix: chmod 0640 "},
		{"FIFO", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "gossip.key")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, " is a FIFO, not a regular file"},
		{"symlink to /dev/zero", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "gossip.key")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, " is a device, not a regular file"},
		{"oversized", func(t *testing.T, dir string) string {
			return writeKey(t, dir, b64Key+"\n"+strings.Repeat("#", KeyFileLimit), 0o640)
		}, " is 65581 bytes, more than the 64 KiB this file may hold"},
		{"a directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "gossip.key")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, " is a directory, not a regular file"},
		{"owned by another user", func(t *testing.T, dir string) string {
			requireRootOrCI(t)
			p := writeKey(t, dir, b64Key+"\n", 0o640)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, " is owned by uid 65534, not by root or the daemon's user (fix: chown root:hostlb "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := tc.setup(t, dir)
			err := loadWithKey(t, dir)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff([]string{"4:gossip.secret_key_file"}, where(t, err)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), key+tc.msg) {
				t.Errorf("error\n%v\ndoes not say\n%s", err, key+tc.msg)
			}
		})
	}
}

// TestReadSecretBoundedRead: the size in fstat is not trusted; a file that
// says it is small but is not (procfs, a file still growing) is read only
// up to limit+1 bytes. /proc/self/environ reports size 0.
func TestReadSecretBoundedRead(t *testing.T) {
	fi, err := os.Stat("/proc/self/environ")
	if err != nil || fi.Size() != 0 || fi.Mode().Perm()&0o006 != 0 {
		t.Skipf("/proc/self/environ is not a 0-size private file here (%v)", err)
	}
	data, err := ReadSecret("/proc/self/environ", 1<<20)
	if err != nil {
		t.Fatalf("limit 1 MiB: %v", err)
	}
	if len(data) < 2 {
		t.Skip("the environment is too small to test a bounded read")
	}
	_, err = ReadSecret("/proc/self/environ", int64(len(data)-1))
	var se *SecretFileError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("a limit of %d bytes on a %d-byte file: got %v, want too large", len(data)-1, len(data), err)
	}
}

func TestKubeconfigAndPasswordChecked(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "gossip.key")
	kc := filepath.Join(dir, "kubeconfig")
	pw := filepath.Join(dir, "peer.password")
	for p, content := range map[string]string{key: b64Key + "\n", kc: testKubeconfig, pw: "secret\n"} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(conf, []byte("[node]\nname = \"n1\"\n[gossip]\nsecret_key_file = \"gossip.key\"\n"+
		"[bgp]\nasn = 64512\n[[bgp.peer]]\naddress = \"192.0.2.1\"\nasn = 64500\npassword_file = \"peer.password\"\n"+
		"[kubernetes]\nkubeconfig = \"kubeconfig\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Kubernetes.KubeconfigData) != testKubeconfig || c.BGP.Peers[0].Password != "secret" {
		t.Fatalf("kubeconfig %q, password %q", c.Kubernetes.KubeconfigData, c.BGP.Peers[0].Password)
	}
	for _, p := range []string{kc, pw} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Load(conf)
	if diff := cmp.Diff([]string{"10:bgp.peer[0].password_file", "12:kubernetes.kubeconfig"}, where(t, err)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	for _, p := range []string{kc, pw} {
		if want := p + " has mode 0644: readable by every user (fix: chmod 0640 " + p + ")"; !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\ndoes not say\n%s", err, want)
		}
	}
}
