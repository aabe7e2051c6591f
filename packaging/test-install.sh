#!/usr/bin/env bash
# Checks `make install` into scratch DESTDIRs: every file lands where the
# docs say, the binaries print the version they were built with, the
# installed config loads, an edited config survives a reinstall, PREFIX
# reaches ExecStart, and the unit files pass `systemd-analyze verify` when
# systemd-analyze is installed. Run by .ci/run.
#
# `make install` builds into bin/ first; the build runs in a scratch copy
# of the checkout so that the user's bin/ (their own build, perhaps of
# another version) is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() { echo "test-install: $*" >&2; exit 1; }

# The working tree as it is (uncommitted edits included) and .git, for
# the commit go build stamps; not bin/ or the binaries `go build` leaves.
mkdir "$dest/src"
tar -c --exclude=./bin --exclude=./statebusd --exclude=./statebus -f - . | tar -x -C "$dest/src" -f -
repo=$PWD
userbin() { (cd "$repo" && find bin -type f -exec cksum {} + 2>/dev/null | sort) || true; }
before=$(userbin)
cd "$dest/src"

make -s install DESTDIR="$dest/a" VERSION=v0.0.0-citest >/dev/null
for f in usr/local/bin/statebusd usr/local/bin/statebus \
	usr/local/lib/systemd/system/statebusd.service usr/local/lib/systemd/system/statebusd.socket \
	usr/local/lib/sysusers.d/statebus.conf usr/local/share/doc/statebus/operations.md \
	etc/statebus/appsettings.json; do
	[ -s "$dest/a/$f" ] || fail "make install did not install $f"
done
bin=$dest/a/usr/local/bin
"$bin/statebusd" --version | grep -q '^statebusd v0.0.0-citest (commit ' || fail "statebusd --version: $("$bin/statebusd" --version)"
"$bin/statebus" --version | grep -q '^statebus v0.0.0-citest (commit ' || fail "statebus --version: $("$bin/statebus" --version)"
# config.Load validates everything before --version answers.
"$bin/statebusd" --config "$dest/a/etc/statebus/appsettings.json" --version >/dev/null \
	|| fail "the installed appsettings.json does not load"

echo '{"MessageBus": {}}' > "$dest/a/etc/statebus/appsettings.json"
make -s install DESTDIR="$dest/a" VERSION=v0.0.0-citest >/dev/null
grep -qx '{"MessageBus": {}}' "$dest/a/etc/statebus/appsettings.json" || fail "reinstall overwrote an edited config"

make -s install DESTDIR="$dest/b" PREFIX=/usr SYSCONFDIR=/etc VERSION=v0.0.0-citest >/dev/null
grep -qx 'ExecStart=/usr/bin/statebusd --config /etc/statebus/appsettings.json' \
	"$dest/b/usr/lib/systemd/system/statebusd.service" || fail "PREFIX=/usr did not reach ExecStart"

if command -v systemd-analyze >/dev/null 2>&1; then
	units=$dest/units
	mkdir -p "$units"
	# verify wants ExecStart's binary to exist: point it at the staged one.
	sed "s|^ExecStart=/usr/local/bin/statebusd|ExecStart=$bin/statebusd|" \
		"$dest/a/usr/local/lib/systemd/system/statebusd.service" > "$units/statebusd.service"
	cp "$dest/a/usr/local/lib/systemd/system/statebusd.socket" "$units/"
	out=$(systemd-analyze verify --man=no "$units/statebusd.service" "$units/statebusd.socket" 2>&1) \
		|| fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
	systemd-analyze security --offline=true --no-pager "$units/statebusd.service" 2>/dev/null | tail -1 || true
else
	echo "test-install: systemd-analyze not installed; unit files not verified"
fi
[ "$(userbin)" = "$before" ] || fail "the checkout's bin/ changed"
echo "test-install: ok"
