#!/usr/bin/env bash
# Builds the pinned control plane the Kubernetes tests run against —
# kube-apiserver, kube-controller-manager and etcd, from tools/kube (its own
# Go module) — into a cache directory, once per pin. Used by `make kube-bins`
# (a prerequisite of test-root and bench); prints the directory last.
#
# The cache convention, which tests/kubeapi.Bins follows too:
#   $HOSTLB_KUBE_BIN_DIR if set, else
#   /var/cache/hostlb/kube-<version>/ as root,
#   ${XDG_CACHE_HOME:-~/.cache}/hostlb/kube-<version>/ otherwise,
# where <version> is the k8s.io/kubernetes version in tools/kube/go.mod. The
# directory holds the three binaries and a file `stamp` with the sha256 of
# tools/kube/go.mod followed by go.sum: a stamp that differs (a new pin, a new
# replace line) means rebuild.
#
# A build goes to a temporary sibling directory and is renamed into place
# only when it succeeded, so an interrupted build never leaves a half cache;
# a lock (flock) makes a second concurrent run wait for the first and then
# find the cache fresh. A cold build takes 10-20 minutes on 2 cores.
#
#     tests/scripts/build-kube.sh            # build if needed, print the dir
#     tests/scripts/build-kube.sh --adopt    # stamp an existing, complete dir
#                                            # built by hand from this pin
set -euo pipefail

adopt=
if [ "${1:-}" = --adopt ]; then
	adopt=1
fi

root=$(cd "$(dirname "$0")/../.." && pwd)
mod="$root/tools/kube"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

version=$(sed -n 's|^[[:space:]]*k8s.io/kubernetes \(v[^ ]*\).*|\1|p' "$mod/go.mod" | head -n1)
if [ -z "$version" ]; then
	echo "build-kube: no k8s.io/kubernetes version in $mod/go.mod" >&2
	exit 1
fi
hash=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)

if [ -n "${HOSTLB_KUBE_BIN_DIR:-}" ]; then
	dir=$HOSTLB_KUBE_BIN_DIR
elif [ "$(id -u)" -eq 0 ]; then
	dir=/var/cache/hostlb/kube-$version
else
	dir=${XDG_CACHE_HOME:-$HOME/.cache}/hostlb/kube-$version
fi
dir=${dir%/}
parent=$(dirname "$dir")
mkdir -p "$parent"

bins=(kube-apiserver kube-controller-manager etcd)
fresh() {
	[ "$(cat "$dir/stamp" 2>/dev/null)" = "$hash" ] || return 1
	for b in "${bins[@]}"; do
		[ -x "$dir/$b" ] || return 1
	done
}

exec 9>"$parent/.$(basename "$dir").lock"
if ! flock -n 9; then
	echo "build-kube: another build of $dir is running; waiting for it"
	flock 9
fi

if fresh; then
	echo "build-kube: $version up to date (stamp ${hash:0:8})"
	echo "$dir"
	exit 0
fi

if [ -n "$adopt" ]; then
	for b in "${bins[@]}"; do
		if [ ! -x "$dir/$b" ]; then
			echo "build-kube: --adopt: $dir/$b is missing; nothing to adopt" >&2
			exit 1
		fi
	done
	echo "$hash" >"$dir/stamp"
	echo "build-kube: adopted $dir as $version (stamp ${hash:0:8})"
	echo "$dir"
	exit 0
fi

# Leftovers of a build that was SIGKILLed: no build is running (the lock).
rm -rf "$parent/.$(basename "$dir").build."* "$parent/.$(basename "$dir").old."*

tmp=$(mktemp -d "$parent/.$(basename "$dir").build.XXXXXX")
old=
cleanup() {
	rm -rf "$tmp"
	if [ -n "$old" ]; then rm -rf "$old"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "build-kube: building $version (stamp ${hash:0:8}) into $dir; 10-20 minutes on a cold Go cache"
start=$(date +%s)
(
	cd "$mod"
	go build -trimpath -ldflags "-s -w" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		./etcd
)
echo "$hash" >"$tmp/stamp"
chmod 0755 "$tmp"

# Swap: the old directory (a stale pin, or a half one from a hand build) is
# moved aside first, so that $dir is either absent or complete.
if [ -e "$dir" ]; then
	old=$(mktemp -d "$parent/.$(basename "$dir").old.XXXXXX")
	mv "$dir" "$old/"
fi
mv "$tmp" "$dir"
echo "build-kube: built $version in $(($(date +%s) - start))s"
echo "$dir"
