// Package nspawn boots throw-away Debian containers under a real systemd, for
// tests and demos that must see what a user sees: dpkg maintainer scripts,
// systemctl, journald.
//
// A minimal bookworm rootfs is built once with debootstrap and cached under
// /var/cache/hostlb (outside the checkout, shared by every clone). Each
// [Boot] mounts a private overlay of it, starts `systemd-nspawn --boot` with
// a private network, waits for the container's systemd to finish booting and
// runs commands in it with nsenter. [Machine.Close] powers it off and removes
// the overlay. Run directories of test processes that died without cleaning
// up are removed by the next [Boot].
//
// Everything here needs root, systemd-nspawn (Debian package
// systemd-container), debootstrap and nsenter; [Available] says what is
// missing.
package nspawn
