package control

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hostlb/hostlb/daemon/control/api"
)

// SocketMode is the control socket's mode: its owner (the daemon's user)
// and its group (api.AdminGroup) may connect, nobody else.
const SocketMode = 0o660

// ListenOptions change how Listen sets up the socket; the zero value is
// the daemon's.
type ListenOptions struct {
	// Group is the socket's group; default api.AdminGroup.
	Group string
	// LookupGroup resolves a group name to its GID; default os/user
	// (the files in /etc: hostlbd is built without cgo, so NSS modules
	// are not asked).
	LookupGroup func(name string) (int, error)
}

// Listen creates the control socket at path and returns its listener,
// whose Close removes the file:
//
//   - the directory is created (0755) if missing; the packaged unit
//     creates /run/hostlb itself (RuntimeDirectory=);
//   - a socket file left by a run that crashed (nothing accepts on it) is
//     removed; a socket something still answers on is an error (another
//     hostlbd), and so is a path that is not a socket;
//   - the socket gets mode 0660 and group hostlb-admin (SPEC §8). The
//     packaged unit runs the daemon with that group (Group=hostlb-admin,
//     SupplementaryGroups=hostlb for the secrets), so the socket and the
//     unit's /run/hostlb are created in it; a daemon started otherwise
//     (as root, by hand) gives the socket to the group if it exists. If
//     it cannot, the socket keeps the daemon's group and the log says so.
func Listen(path string, log *slog.Logger, o ListenOptions) (*net.UnixListener, error) {
	if o.Group == "" {
		o.Group = api.AdminGroup
	}
	if o.LookupGroup == nil {
		o.LookupGroup = lookupGroup
	}
	if dir := filepath.Dir(path); !exists(dir) {
		// Mode 0755 whatever the umask: members of the group must reach
		// the socket, whose own mode is what guards it.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control socket %s: create its directory: %w", path, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control socket %s: chmod its directory: %w", path, err)
		}
	}
	if err := removeStale(path, log); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Until now the socket had the mode the umask left (the unit's 0077:
	// owner only), never a wider one than this.
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket %s: chmod: %w", path, err)
	}
	gid, gerr := o.LookupGroup(o.Group)
	switch {
	case gerr != nil:
		log.Warn("control socket: group "+o.Group+" not found; the socket keeps the daemon's group, whose members can use hostlbctl",
			"socket", path, "group", o.Group, "err", gerr)
	case fileGID(path) == gid:
		// The packaged unit runs the daemon with group hostlb-admin:
		// the socket has it already, and its SystemCallFilter= denies
		// chown anyway.
	default:
		if err := os.Chown(path, -1, gid); err != nil {
			// Not root, and not a member of the group.
			log.Warn("control socket: cannot give the socket to group "+o.Group+"; it keeps the daemon's group",
				"socket", path, "group", o.Group, "err", err)
		}
	}
	owner, group := describeOwner(path)
	log.Info("control socket listening", "socket", path, "owner", owner, "group", group, "mode", fmt.Sprintf("%04o", SocketMode))
	return ln, nil
}

// removeStale removes a socket file nothing accepts on.
func removeStale(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("control socket %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control socket %s: the path exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("control socket %s: something already accepts connections on it (another hostlbd?): "+
			"stop it, or give this one another [control] socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		log.Warn("control socket: cannot tell whether the existing socket is in use; replacing it", "socket", path, "err", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: remove the socket a previous run left: %w", path, err)
	}
	log.Info("control socket: removed the socket file a previous run left", "socket", path)
	return nil
}

// fileGID is path's group, -1 if unknown.
func fileGID(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1
	}
	return int(st.Gid)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %s has GID %q: %w", name, g.Gid, err)
	}
	return gid, nil
}

// describeOwner names the socket's owner and group, for the log.
func describeOwner(path string) (owner, group string) {
	fi, err := os.Stat(path)
	if err != nil {
		return "?", "?"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?", "?"
	}
	owner, group = strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return owner, group
}
