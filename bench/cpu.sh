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
#
# Prints, per framing, the median over the rounds of ns of CPU per
# delivered event for statebusd and for the two clients, and the bytes on
# the wire per event each way (statebusd's bytes in and out / events).
set -euo pipefail
RUNS=${RUNS:-3}
MSGS=${MSGS:-1000000}
SIZE=${SIZE:-128}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbcpu.XXXXXX")
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
(cd "$root" && go build -o "$tmp/statebusd" ./cmd/statebusd && go build -o "$tmp/statebus" ./cmd/statebus)
sock=$tmp/bus.sock
"$tmp/statebusd" --pipe-name "$sock" --http off >"$tmp/statebusd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }      # utime+stime, ticks
io() { awk '/^(rchar|wchar)/{s+=$2} END{printf "%.0f\n", s}' "/proc/$1/io"; }
declare -A out
for round in $(seq "$RUNS"); do
	for framing in json compact; do
		d0=$(cpu "$pid"); b0=$(io "$pid")
		/usr/bin/time -f "%U %S" -o "$tmp/time" timeout 300 "$tmp/statebus" bench --pipe-name "$sock" \
			--framing "$framing" --msgs "$MSGS" --size "$SIZE" --json >"$tmp/bench.json"
		d1=$(cpu "$pid"); b1=$(io "$pid")
		read -r cu cs <"$tmp/time"
		line=$(awk -v d="$((d1 - d0))" -v t="$tick" -v cu="$cu" -v cs="$cs" -v n="$MSGS" -v b="$((b1 - b0))" \
			'BEGIN{printf "%.0f %.0f %.0f", d/t*1e9/n, (cu+cs)*1e9/n, b/n}')
		out[$framing]+="$line"$'\n'
		echo "round $round $framing: statebusd, clients ns CPU/event, statebusd bytes in+out/event: $line" >&2
	done
done
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf '%-8s %16s %16s %18s\n' framing "statebusd ns/ev" "clients ns/ev" "wire bytes/ev"
for framing in json compact; do
	s=$(printf '%s' "${out[$framing]}" | awk '{print $1}' | med)
	c=$(printf '%s' "${out[$framing]}" | awk '{print $2}' | med)
	w=$(printf '%s' "${out[$framing]}" | awk '{print $3}' | med)
	printf '%-8s %16s %16s %18s\n' "$framing" "$s" "$c" "$w"
done
