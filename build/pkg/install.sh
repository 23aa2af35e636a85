#!/bin/sh
# hashpilot firmware package installer: verify the package, then install it.
# Usage: ./install.sh [--root DIR] [--init systemd|sysv|procd|auto] [--mqtt-user U
#                     --mqtt-password-file F | --rotate-credentials] [--site S] [--rig R]
# Runs the packaged binary itself (no Python needed on the rig). Example hooks (hooks.d/*) are
# copied into <root>/etc/hashpilot/hooks.d/ unless a file of that name exists already.
set -eu
cd "$(dirname "$0")"
VERSION=$(sed -n 's/^  "version": "\([^"]*\)",\{0,1\}$/\1/p' MANIFEST.json)
[ -n "$VERSION" ] || { echo "install.sh: no version in MANIFEST.json" >&2; exit 1; }
if [ -d hashpilot ]; then BIN=./hashpilot/hashpilot; else BIN=./hashpilot; fi

"$BIN" firmware verify --dir .

ROOT=/
prev=
for arg in "$@"; do
    [ "$prev" = --root ] && ROOT=$arg
    prev=$arg
done
"$BIN" firmware install --root "$ROOT" --binary ./hashpilot --release-version "$VERSION" "$@"

HOOKS=$ROOT/etc/hashpilot/hooks.d
for f in hooks.d/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    [ -e "$HOOKS/$name" ] || cp -p "$f" "$HOOKS/$name"
done
echo "install.sh: hashpilot $VERSION installed into $ROOT"
