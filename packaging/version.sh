#!/bin/sh
# Prints the package version of the checkout, valid for both dpkg and rpm:
#   tag v1.2.3 exactly on HEAD        -> 1.2.3
#   tag v1.2.3-rc1 exactly on HEAD    -> 1.2.3~rc1        (sorts before 1.2.3)
#   commits after tag v1.2.3          -> 1.2.3+git<UTC commit time>.<sha>
#   no release tag yet                -> <BASE>~git<UTC commit time>.<sha>
#   no commit at all                  -> <BASE>~dev
# A dirty tree appends ".dirty". The commit time keeps versions of successive
# commits ordered, so installing a newer build is an upgrade for dpkg and rpm.
# BASE is the next release (first argument, default 0.1.0).
set -eu
base=${1:-0.1.0}

if ! sha=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	echo "${base}~dev"
	exit 0
fi
when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=".dirty"
fi

if tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
	v=${tag#v}
	echo "$(echo "$v" | tr '-' '~')${dirty}"
elif tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null); then
	v=${tag#v}
	echo "$(echo "$v" | tr '-' '~')+git${when}.${sha}${dirty}"
else
	echo "${base}~git${when}.${sha}${dirty}"
fi
