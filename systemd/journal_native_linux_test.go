package systemd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/tests/netlab"
)

// journaldSocket is where go-systemd sends, fixed at build time.
const journaldSocket = "/run/systemd/journal/socket"

const nativeChildEnv = "HOSTLB_TEST_FAKE_JOURNALD"

// TestJournalHandlerNativeProtocol sends records through the real
// go-systemd journal.Send to a fake journald and decodes the datagrams.
// go-systemd's socket path cannot be changed at run time, so the test
// re-runs itself in a private mount namespace with a tmpfs over /run, where
// it may bind /run/systemd/journal/socket without touching the host.
func TestJournalHandlerNativeProtocol(t *testing.T) {
	if os.Getenv(nativeChildEnv) == "1" {
		fakeJournaldChild(t)
		return
	}
	if os.Geteuid() != 0 {
		netlab.Missing(t, "needs root: runs itself in a private mount namespace to bind a fake journald at %s", journaldSocket)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalHandlerNativeProtocol$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), nativeChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go also makes / MS_PRIVATE
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		netlab.Missing(t, "cannot create a mount namespace here (%v); CI runs this as real root", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestJournalHandlerNativeProtocol") {
		t.Fatalf("child in mount namespace: %v\n%s", err, out)
	}
}

func fakeJournaldChild(t *testing.T) {
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on /run: %v", err)
	}
	var stderr syncBuffer
	log := slog.New(newJournalHandler(slog.LevelDebug, &stderr, journal.Send))

	// No journald yet: the line must reach stderr.
	log.Info("before journald", "vip", "web")
	if out := stderr.String(); !strings.Contains(out, "journald refused") || !strings.Contains(out, "msg=\"before journald\" vip=web") {
		t.Fatalf("without journald, stderr got:\n%s", out)
	}

	if err := os.MkdirAll("/run/systemd/journal", 0o755); err != nil {
		t.Fatal(err)
	}
	jd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: journaldSocket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = jd.Close() }()
	if err := jd.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}

	log.With("node", "n1").WithGroup("bgp").Warn("peer down\nhold timer expired", "peer", "192.0.2.1", "err", errors.New("EOF"), "after", 9*time.Second)
	got := readJournalEntry(t, jd)
	delete(got, "CODE_LINE")
	if !strings.HasSuffix(got["CODE_FILE"], "journal_native_linux_test.go") || !strings.HasSuffix(got["CODE_FUNC"], ".fakeJournaldChild") {
		t.Errorf("CODE_FILE=%q CODE_FUNC=%q, want this function", got["CODE_FILE"], got["CODE_FUNC"])
	}
	delete(got, "CODE_FILE")
	delete(got, "CODE_FUNC")
	want := map[string]string{
		"MESSAGE":           "peer down\nhold timer expired", // binary-length form on the wire
		"PRIORITY":          "4",
		"SYSLOG_IDENTIFIER": "hostlbd",
		"NODE":              "n1",
		"BGP_PEER":          "192.0.2.1",
		"BGP_ERR":           "EOF",
		"BGP_AFTER":         "9s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("journal entry (-want +got):\n%s", diff)
	}

	// Larger than a datagram may be: go-systemd passes a memfd instead.
	big := strings.Repeat("x", 1<<20)
	log.Debug("stack dump", "stack", big)
	got = readJournalEntry(t, jd)
	if got["MESSAGE"] != "stack dump" || got["STACK"] != big || got["PRIORITY"] != "7" {
		t.Errorf("big entry: MESSAGE=%q PRIORITY=%q len(STACK)=%d", got["MESSAGE"], got["PRIORITY"], len(got["STACK"]))
	}

	if c := strings.Count(stderr.String(), "\n"); c != 2 {
		t.Errorf("stderr has %d lines, want only the 2 from before journald:\n%s", c, stderr.String())
	}
}

// readJournalEntry receives one entry as journald would: inline in the
// datagram, or in a file passed with SCM_RIGHTS.
func readJournalEntry(t *testing.T, c *net.UnixConn) map[string]string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("fake journald: %v", err)
	}
	data := buf[:n]
	if oobn > 0 {
		data = readPassedFile(t, oob[:oobn])
	}
	m, err := decodeNative(data)
	if err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return m
}

func readPassedFile(t *testing.T, oob []byte) []byte {
	t.Helper()
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v %v", msgs, err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v %v", fds, err)
	}
	f := os.NewFile(uintptr(fds[0]), "journal-entry")
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// The sender's offset is at the end; read from 0 like journald does.
	b, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeNative parses the journal native protocol
// (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): "NAME=value\n", or for
// values with newlines "NAME\n" + little-endian uint64 length + value + "\n".
// A repeated field is an error: the handler must never send MESSAGE twice.
func decodeNative(b []byte) (map[string]string, error) {
	m := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, errors.New("unterminated field")
		}
		line := string(b[:i])
		b = b[i+1:]
		name, value, inline := strings.Cut(line, "=")
		if !inline {
			if len(b) < 8 {
				return nil, fmt.Errorf("%s: short length", name)
			}
			n := binary.LittleEndian.Uint64(b)
			b = b[8:]
			if uint64(len(b)) < n+1 || b[n] != '\n' {
				return nil, fmt.Errorf("%s: bad binary value", name)
			}
			value = string(b[:n])
			b = b[n+1:]
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("field %s sent twice", name)
		}
		m[name] = value
	}
	return m, nil
}
