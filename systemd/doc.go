// Package systemd is hostlbd's glue to the service manager and the journal,
// and the home of the files that install it as a service.
//
// Go side:
//   - Notifier speaks sd_notify(3): READY=1 after the first full reconcile,
//     RELOADING=1 on SIGHUP, STATUS= lines, STOPPING=1, and watchdog pings
//     that stop while the daemon reports itself unhealthy, so systemd restarts
//     a wedged daemon. Without NOTIFY_SOCKET every call is a no-op.
//   - NewLogHandler picks the slog handler for the [log] format setting. Under
//     journald it sends every record with the native journal protocol, each
//     attribute as its own field (VIP=, NODE=, PEER=), so
//     `journalctl -u hostlb VIP=web` works.
//
// Files (installed by the package, see nfpm.yaml):
//   - hostlb.service: the hardened unit (systemd-analyze security ≤ 2.0).
//   - hostlb.sysusers: the hostlb system user and group.
//   - hostlb.tmpfiles: /run/hostlb, where the control socket lives.
//
// unitfile_test.go checks those files with systemd's own tools.
package systemd
