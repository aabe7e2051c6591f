#!/usr/bin/env bash
# cpu.sh measures the CPU time one delivered event costs, split between
# statebusd and the clients, for each framing: it starts statebusd on a
# socket in a temporary folder, runs `statebus bench` (a publisher and a
# subscriber in one process) with --framing json and compact in turn, and
# reads both processes' user+system CPU time from /proc before and after.
# CPU time, unlike throughput, hardly depends on what else runs on the
# machine.
#
#   bench/cpu.sh                      # RUNS=3 rounds, MSGS=1000000, SIZE=128
#   RUNS=5 SIZE=16 bench/cpu.sh
#   NATS=1 bench/cpu.sh               # and NATS, measured the same way
#   SUBS=50 NATS=1 bench/cpu.sh       # broadcast to 50 subscribers
#
# Prints, per framing, the median over the rounds of ns of CPU per
# delivered event for statebusd and for the two clients, and the bytes on
# the wire per event each way (statebusd's bytes in and out / events).
#
# With NATS=1 each round also runs `nats bench sub` and `nats bench pub`
# (two processes; nats-server v2.15.2 and nats v0.5.0, the versions
# bench/compare.sh uses, built once into ~/.cache/statebus-bench) against
# a nats-server on 127.0.0.1, and prints the same figures for them: on a
# machine whose cores are all busy, throughput follows the total CPU an
# event costs, so the ratio of the totals says what compare.sh's
# throughput rows would say on a saturated machine, without depending on
# what else runs.
set -euo pipefail
RUNS=${RUNS:-3}
MSGS=${MSGS:-1000000}
SIZE=${SIZE:-128}
NATS=${NATS:-0}
SUBS=${SUBS:-1} # more than 1: broadcast (statebus --mode broadcast, nats bench sub --clients)
mode=()
[ "$SUBS" -gt 1 ] && mode=(--mode broadcast --subs "$SUBS")
delivered=$((MSGS * SUBS))
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbcpu.XXXXXX")
pid=
npid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	[ -n "$npid" ] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
(cd "$root" && go build -o "$tmp/statebusd" ./cmd/statebusd && go build -o "$tmp/statebus" ./cmd/statebus)
sock=$tmp/bus.sock
"$tmp/statebusd" --pipe-name "$sock" --http off >"$tmp/statebusd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
if [ "$NATS" = 1 ]; then
	nbin=${XDG_CACHE_HOME:-$HOME/.cache}/statebus-bench/nats-v2.15.2-cli-v0.5.0
	if [ ! -x "$nbin/nats-server" ] || [ ! -x "$nbin/nats" ]; then
		mkdir -p "$nbin"
		(cd "$tmp" && GOWORK=off GOBIN=$nbin timeout 1200 go install github.com/nats-io/nats-server/v2@v2.15.2 &&
			GOWORK=off GOBIN=$nbin timeout 1200 go install github.com/nats-io/natscli/nats@v0.5.0)
	fi
	"$nbin/nats-server" -a 127.0.0.1 -p -1 -m -1 >"$tmp/nats-server.log" 2>&1 &
	npid=$!
	for _ in $(seq 100); do grep -q 'Server is ready' "$tmp/nats-server.log" && break; sleep 0.1; done
	nport=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
	nmport=$(sed -n 's/.*Starting http monitor on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
	[ -n "$nport" ] && [ -n "$nmport" ] || { echo "cpu.sh: nats-server did not start" >&2; exit 1; }
fi
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }      # utime+stime, ticks
io() { awk '/^(rchar|wchar)/{s+=$2} END{printf "%.0f\n", s}' "/proc/$1/io"; }
declare -A out
for round in $(seq "$RUNS"); do
	for framing in json compact; do
		d0=$(cpu "$pid"); b0=$(io "$pid")
		/usr/bin/time -f "%U %S" -o "$tmp/time" timeout 300 "$tmp/statebus" bench --pipe-name "$sock" \
			--framing "$framing" --msgs "$MSGS" --size "$SIZE" "${mode[@]}" --json >"$tmp/bench.json"
		d1=$(cpu "$pid"); b1=$(io "$pid")
		read -r cu cs <"$tmp/time"
		line=$(awk -v d="$((d1 - d0))" -v t="$tick" -v cu="$cu" -v cs="$cs" -v n="$delivered" -v b="$((b1 - b0))" \
			'BEGIN{printf "%.0f %.0f %.0f", d/t*1e9/n, (cu+cs)*1e9/n, b/n}')
		out[$framing]+="$line"$'\n'
		echo "round $round $framing: statebusd, clients ns CPU/event, statebusd bytes in+out/event: $line" >&2
	done
	if [ "$NATS" = 1 ]; then
		subj=cpu.$round
		d0=$(cpu "$npid"); b0=$(io "$npid")
		/usr/bin/time -f "%U %S" -o "$tmp/time.sub" timeout 300 "$nbin/nats" --no-context -s "nats://127.0.0.1:$nport" \
			bench sub "$subj" --clients "$SUBS" --msgs "$MSGS" --size "$SIZE" --no-progress >"$tmp/nats.sub" 2>&1 &
		sp=$!
		for _ in $(seq 300); do
			curl -fsS "http://127.0.0.1:$nmport/subsz?subs=1&test=$subj" 2>/dev/null | grep -oE '"total": *[0-9]+' | grep -qE ": *$SUBS\$" && break
			sleep 0.1
		done
		/usr/bin/time -f "%U %S" -o "$tmp/time.pub" timeout 300 "$nbin/nats" --no-context -s "nats://127.0.0.1:$nport" \
			bench pub "$subj" --msgs "$MSGS" --size "$SIZE" --no-progress >"$tmp/nats.pub" 2>&1
		wait "$sp"
		d1=$(cpu "$npid"); b1=$(io "$npid")
		read -r su ss <"$tmp/time.sub"
		read -r pu ps <"$tmp/time.pub"
		line=$(awk -v d="$((d1 - d0))" -v t="$tick" -v c="$su $ss $pu $ps" -v n="$delivered" -v b="$((b1 - b0))" \
			'BEGIN{split(c, x, " "); printf "%.0f %.0f %.0f", d/t*1e9/n, (x[1]+x[2]+x[3]+x[4])*1e9/n, b/n}')
		out[nats]+="$line"$'\n'
		echo "round $round nats: nats-server, clients ns CPU/event, nats-server bytes in+out/event: $line" >&2
	fi
done
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf '%-8s %16s %16s %18s %14s\n' framing "server ns/ev" "clients ns/ev" "wire bytes/ev" "total ns/ev"
rows="json compact"
[ "$NATS" = 1 ] && rows="$rows nats"
for framing in $rows; do
	s=$(printf '%s' "${out[$framing]}" | awk '{print $1}' | med)
	c=$(printf '%s' "${out[$framing]}" | awk '{print $2}' | med)
	w=$(printf '%s' "${out[$framing]}" | awk '{print $3}' | med)
	t=$(printf '%s' "${out[$framing]}" | awk '{print $1+$2}' | med)
	printf '%-8s %16s %16s %18s %14s\n' "$framing" "$s" "$c" "$w" "$t"
done
