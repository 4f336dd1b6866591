#!/usr/bin/env bash
# Installs the Debian packages hostlb's build, tests and demo need, and only
# those that are missing: a no-op (a dpkg query) on a machine that has them.
# Used by `make deps` (a prerequisite of `make test` and `make demo`) and by
# .ci/run. Needs root to install; without root it only reports what's missing.
set -euo pipefail

# build: make; packages: lintian rpm dpkg-dev; systemd tests: systemd
# (systemd-analyze) systemd-container (systemd-nspawn) debootstrap util-linux
# (nsenter) procps; network lab: iproute2 iputils-ping arping ndisc6 bird2 frr
# keepalived tcpdump nftables (gossip partitions); failover benchmark plot: gnuplot-nox;
# hostlbctl's completion scripts: zsh fish (their syntax is checked); the man
# pages are rendered with man-db's man(1).
pkgs=(make ca-certificates xz-utils zstd zsh fish man-db
	lintian rpm dpkg-dev
	systemd systemd-container debootstrap util-linux procps
	iproute2 iputils-ping arping ndisc6 bird2 frr keepalived tcpdump nftables
	gnuplot-nox)

missing=()
for p in "${pkgs[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
	echo "install-deps: root-only tests will skip" >&2
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
# Packages whose postinst would start a daemon on this machine (bird2,
# keepalived) must not: a policy-rc.d that denies every start, only for the
# duration of the install, unless the machine already has one.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
