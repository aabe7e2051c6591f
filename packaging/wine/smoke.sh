#!/usr/bin/env bash
# Wine smoke check of the windows/amd64 build: .ci/run calls it; run it
# alone as bash packaging/wine/smoke.sh from the repository's root.
#
# It installs Wine and the MinGW binutils if missing (apt-get), assembles
# the stand-in bcryptprimitives.dll from prng.s (Go 1.22+ needs its
# ProcessPrng; Wine 8.0 has no such DLL), makes a fresh Wine prefix,
# starts statebusd.exe on a named pipe and runs the CLI against it
# (health, listen + send, test ping, bench, selftest, statebusd
# --self-test, bench --inproc), installs, starts, stops and uninstalls it
# as a service under Wine's service manager, then runs the Windows test binaries of
# WINE_TEST_PKGS. Where Wine cannot be installed it says so and exits 0.
#
# WINE_TEST_PKGS is the packages whose Windows test binaries run. The
# default is what fits the check's budget (about two minutes after the
# install, on a shared 2-core machine): internal/server (the named-pipe
# listener, peer identity, shutdown), internal/selftest (temporary buses)
# and protocol (pipe names). The other packages' Windows test binaries
# are run by hand (docs/operations.md, "Windows"); each links and runs for
# up to a minute or more under Wine. WINE_TEST_PKGS=all runs them all.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS

skip() {
  echo "SKIP: Wine smoke check not run: $*"
  exit 0
}

wine=$(command -v wine64 || true)
[ -z "$wine" ] && [ -x /usr/lib/wine/wine64 ] && wine=/usr/lib/wine/wine64
if [ -z "$wine" ] || ! command -v x86_64-w64-mingw32-as >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    skip "wine64 or the MinGW binutils are missing and there is no apt-get to install them (install wine64 and binutils-mingw-w64-x86-64)"
  fi
  echo "== installing wine64 and binutils-mingw-w64-x86-64"
  if ! (apt-get install -y -qq --no-install-recommends wine64 binutils-mingw-w64-x86-64 >/dev/null 2>&1 \
    || (apt-get update -qq && apt-get install -y -qq --no-install-recommends wine64 binutils-mingw-w64-x86-64 >/dev/null)); then
    skip "apt-get could not install wine64 and binutils-mingw-w64-x86-64"
  fi
  wine=$(command -v wine64 || true)
  [ -z "$wine" ] && [ -x /usr/lib/wine/wine64 ] && wine=/usr/lib/wine/wine64
  [ -z "$wine" ] && skip "wine64 installed but not found on PATH or in /usr/lib/wine"
  start=$SECONDS
fi
wineserver=$(dirname "$wine")/wineserver
command -v wineserver >/dev/null 2>&1 && wineserver=$(command -v wineserver)

work=$(mktemp -d)
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEARCH=win64
# No Gecko or Mono installer prompts: nothing here needs them.
export WINEDLLOVERRIDES="mscoree=;mshtml="
cleanup() {
  "$wineserver" -k >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: Wine smoke check: $*"
  for f in "$work"/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
  done
  exit 1
}

echo "== Wine: $("$wine" --version)"

echo "== Wine: stand-in bcryptprimitives.dll from packaging/wine/prng.s"
x86_64-w64-mingw32-as -o "$work/prng.o" packaging/wine/prng.s
x86_64-w64-mingw32-dlltool -d packaging/wine/advapi32.def -l "$work/libadvapi32.a"
x86_64-w64-mingw32-ld --shared -e DllMain -o "$work/bcryptprimitives.dll" \
  "$work/prng.o" packaging/wine/bcryptprimitives.def "$work/libadvapi32.a"

echo "== Wine: a fresh prefix (wineboot, in the background) while Go builds"
"$wine" wineboot -i >"$work/wineboot.log" 2>&1 &
wineboot=$!

pkgs=${WINE_TEST_PKGS:-./internal/server ./internal/selftest ./protocol}
if [ "$pkgs" = all ]; then
  pkgs=$(go list ./... | sed 's|^github.com/statebus/statebus|.|')
fi
echo "== Wine: GOOS=windows go build statebus.exe statebusd.exe; go test -c $pkgs"
GOOS=windows GOARCH=amd64 go build -o "$work/" ./cmd/statebus ./cmd/statebusd
for p in $pkgs; do
  GOOS=windows GOARCH=amd64 go test -c -o "$work/$(echo "$p" | tr -c 'A-Za-z0-9\n' _).test.exe" "$p" >/dev/null
done

wait "$wineboot" || fail "wineboot -i failed"
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
# Wine's service manager gives a service it starts ServicesPipeTimeout
# (10 s by default, read as a string when services.exe starts) to connect
# to it and again to report its state; a Go program starting under Wine
# on a loaded 2-core machine can take longer, and then sc start fails
# silently (CI saw it once). Two minutes, and a fresh wineserver so that
# services.exe reads it.
"$wine" reg add 'HKLM\System\CurrentControlSet\Control' /v ServicesPipeTimeout /t REG_SZ /d 120000 /f \
  >"$work/reg.log" 2>&1 || fail "could not set ServicesPipeTimeout in the Wine prefix"
"$wineserver" -w
echo "   prefix and binaries ready after $((SECONDS - start)) s"

sb() { "$wine" "$work/statebus.exe" --pipe-name "$pipe" "$@"; }
pipe=statebus-ci-$$
echo "== Wine: statebusd.exe on \\\\.\\pipe\\$pipe"
"$wine" "$work/statebusd.exe" --pipe-name "$pipe" --http off >"$work/statebusd.log" 2>&1 &
deadline=$((SECONDS + 30))
until sb health >"$work/health.log" 2>&1; do
  [ $SECONDS -lt $deadline ] || fail "statebusd.exe did not become healthy within 30 s"
  sleep 0.5
done
cat "$work/health.log"

echo "== Wine: statebus listen + send"
sb listen smoke-b >"$work/listen.out" 2>"$work/listen.log" &
deadline=$((SECONDS + 30))
until grep -q '^Listening as' "$work/listen.log"; do
  [ $SECONDS -lt $deadline ] || fail "statebus listen did not register within 30 s"
  sleep 0.2
done
sb send smoke-b PING '{"Message":"from wine"}' || fail "statebus send failed"
deadline=$((SECONDS + 30))
until grep -q '"from wine"' "$work/listen.out"; do
  [ $SECONDS -lt $deadline ] || fail "statebus listen did not print the event within 30 s"
  sleep 0.2
done
cat "$work/listen.out"

echo "== Wine: statebus test ping"
sb test ping || fail "statebus test ping failed"

echo "== Wine: statebus bench (against statebusd.exe)"
sb bench --pubs 1 --subs 1 --msgs 20000 --size 64 || fail "statebus bench failed"

echo "== Wine: statebus selftest"
"$wine" "$work/statebus.exe" selftest || fail "statebus selftest failed"

echo "== Wine: statebusd --self-test"
"$wine" "$work/statebusd.exe" --self-test || fail "statebusd --self-test failed"

echo "== Wine: statebus bench --inproc"
"$wine" "$work/statebus.exe" bench --inproc --msgs 20000 --size 64 || fail "statebus bench --inproc failed"
echo "== Wine: statebusd install, sc start, sc stop, statebusd uninstall (Wine's service manager)"
svcpipe=statebus-svc-$$
svcname=StatebusSmoke$$
"$wine" "$work/statebusd.exe" install --service-name "$svcname" --start manual -- --pipe-name "$svcpipe" --http off \
  || fail "statebusd install failed"
"$wine" sc start "$svcname" >"$work/sc.log" 2>&1 || true # Wine's sc exits 1 on success too
deadline=$((SECONDS + 150))
until "$wine" "$work/statebus.exe" --pipe-name "$svcpipe" health >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then
    "$wine" sc query "$svcname" >>"$work/sc.log" 2>&1 || true
    fail "the service did not serve \\\\.\\pipe\\$svcpipe within 150 s of sc start"
  fi
  sleep 0.5
done
echo "   the service serves \\\\.\\pipe\\$svcpipe"
"$wine" sc stop "$svcname" >>"$work/sc.log" 2>&1 || true
deadline=$((SECONDS + 30))
until "$wine" sc query "$svcname" 2>&1 | grep -q STOPPED; do
  [ $SECONDS -lt $deadline ] || fail "the service did not stop within 30 s of sc stop"
  sleep 0.5
done
"$wine" sc query "$svcname" | grep -q 'WIN32_EXIT_CODE *: 0 ' || fail "the service stopped with an error: $("$wine" sc query "$svcname")"
echo "   sc stop: stopped, exit code 0"
"$wine" "$work/statebusd.exe" uninstall --service-name "$svcname" || fail "statebusd uninstall failed"

echo "   CLI checks done after $((SECONDS - start)) s"

echo "== Wine: the Windows test binaries"
# One after another, after the CLI checks: run alongside them on a busy
# 2-core machine, timing-sensitive tests (TestTLSHandshakeFlood) failed.
(
  for p in $pkgs; do
    exe="$work/$(echo "$p" | tr -c 'A-Za-z0-9\n' _).test.exe"
    [ -f "$exe" ] || { echo "   $p: no test files"; continue; }
    # Run from the package's directory, as go test does (testdata).
    out="$work/test-$(basename "$exe" .test.exe).log"
    if (cd "$p" && "$wine" "$exe" -test.v -test.timeout 300s) >"$out" 2>&1; then
      echo "   ok   $p: $(grep -c '^--- PASS' "$out") passed, $(grep -c '^--- SKIP' "$out") skipped"
    else
      echo "   FAIL $p:"
      grep -E -A6 '^(--- FAIL|panic)' "$out" | head -40
      tail -n 20 "$out"
      exit 1
    fi
  done
) >"$work/tests.out" 2>&1 || { cat "$work/tests.out"; fail "a Windows test binary failed under Wine"; }
cat "$work/tests.out"

"$wineserver" -k >/dev/null 2>&1 || true
echo "== Wine smoke check passed in $((SECONDS - start)) s (after the install)"
