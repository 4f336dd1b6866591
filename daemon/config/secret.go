package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// The secret files the config points at (the gossip key file, the
// kubeconfig, BGP password files) are read through ReadSecret: a key file
// that anyone can read or rewrite, or one that is really /dev/zero or a
// FIFO, must stop the daemon with a clear message, not grow it without
// bound or hang it (issue 9 item 5).

// Size limits of the secret files. A key file of 64 KiB holds ~1,400 keys;
// a kubeconfig with embedded certificates is a few KiB; a TCP-MD5 password
// is at most 80 bytes.
const (
	KeyFileLimit    = 64 << 10
	KubeconfigLimit = 4 << 20
	PasswordLimit   = 4 << 10
)

// DaemonUser is the account the packaged daemon runs as (SPEC §8): a secret
// file it owns is accepted as well as one owned by root.
const DaemonUser = "hostlb"

// SecretFileError is a secret file refused by ReadSecret: Problem says what
// is wrong with the file at Path and Fix the command that mends it.
type SecretFileError struct {
	Path    string
	Problem string
	Fix     string
}

func (e *SecretFileError) Error() string {
	return fmt.Sprintf("%s %s (fix: %s)", e.Path, e.Problem, e.Fix)
}

// ReadSecret reads the secret file name and returns its content. It refuses,
// with a *SecretFileError, anything but a regular file of at most limit
// bytes that is owned by root, by the calling user or by DaemonUser, is not
// writable by others and not readable by others. It never blocks: the file
// is opened with O_NONBLOCK, so a FIFO is refused instead of waiting for a
// writer, and it reads at most limit+1 bytes, so /dev/zero or a file that
// grows while read cannot exhaust memory. Errors from open keep their
// fs.ErrNotExist and fs.ErrPermission.
func ReadSecret(name string, limit int64) ([]byte, error) {
	// Stat first, so that a device is never even opened (opening some has
	// side effects); the fstat below is what counts, as the path may be
	// replaced between the two.
	if fi, err := os.Stat(name); err == nil {
		if err := checkSecret(name, fi, limit, secretOwner); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) { // a socket
			return nil, &SecretFileError{Path: name, Problem: "is not a regular file", Fix: "point the config at a regular file"}
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSecret(name, fi, limit, secretOwner); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(name, int64(len(data)), limit)
	}
	return data, nil
}

// secretOwner reports whether uid may own a secret file: root, the
// effective user (the daemon, or the operator running `hostlbctl config
// check`) or DaemonUser. DaemonUser is looked up (in /etc/passwd: the
// binaries are built without cgo) only when the first two do not match.
func secretOwner(uid uint32) bool {
	if uid == 0 || int64(uid) == int64(os.Geteuid()) {
		return true
	}
	u, err := user.Lookup(DaemonUser)
	return err == nil && u.Uid == strconv.FormatUint(uint64(uid), 10)
}

// checkSecret is ReadSecret's verdict on the file described by fi, without
// other I/O than owner's. owner says which uids may own it. Every problem is
// named at once, with one fix for all.
func checkSecret(name string, fi fs.FileInfo, limit int64, owner func(uid uint32) bool) error {
	if !fi.Mode().IsRegular() {
		what := "not a regular file"
		switch t := fi.Mode().Type(); {
		case t&fs.ModeNamedPipe != 0:
			what = "a FIFO, not a regular file"
		case t&fs.ModeDevice != 0:
			what = "a device, not a regular file"
		case t&fs.ModeDir != 0:
			what = "a directory, not a regular file"
		case t&fs.ModeSocket != 0:
			what = "a socket, not a regular file"
		}
		return &SecretFileError{Path: name, Problem: "is " + what,
			Fix: fmt.Sprintf("replace it with a regular file: rm %s, then write the secret into a new file %[1]s, mode 0640, owner root:%s", name, DaemonUser)}
	}
	if fi.Size() > limit {
		return tooLarge(name, fi.Size(), limit)
	}
	var problems, fixes []string
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if !owner(st.Uid) {
			problems = append(problems, fmt.Sprintf("is owned by uid %d, not by root or the daemon's user", st.Uid))
			fixes = append(fixes, fmt.Sprintf("chown root:%s %s", DaemonUser, name))
		}
	}
	perm := fi.Mode().Perm()
	if bad := perm & 0o006; bad != 0 {
		var what []string
		if bad&0o004 != 0 {
			what = append(what, "readable")
		}
		if bad&0o002 != 0 {
			what = append(what, "writable")
		}
		problems = append(problems, fmt.Sprintf("has mode %04o: %s by every user", perm, strings.Join(what, " and ")))
		fixes = append(fixes, fmt.Sprintf("chmod 0640 %s", name))
	}
	if len(problems) == 0 {
		return nil
	}
	return &SecretFileError{Path: name, Problem: strings.Join(problems, " and "), Fix: strings.Join(fixes, "; ")}
}

func tooLarge(name string, size, limit int64) error {
	most := fmt.Sprintf("%d bytes", limit)
	switch {
	case limit%(1<<20) == 0:
		most = fmt.Sprintf("%d MiB", limit>>20)
	case limit%(1<<10) == 0:
		most = fmt.Sprintf("%d KiB", limit>>10)
	}
	return &SecretFileError{Path: name, Problem: fmt.Sprintf("is %d bytes, more than the %s this file may hold", size, most),
		Fix: "check that the config names the right file"}
}
