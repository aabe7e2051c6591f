#!/usr/bin/env bash
# durable.sh measures durable mailboxes (docs/durability.md) side by side
# with JetStream's own publishing into a file-storage stream with the same
# sync settings, in one run, interleaved, and prints medians.
#
#   bench/durable.sh                # RUNS=3, MSGS=100000, ONE=2000
#
# Rows, for DurableSync always (nats-server sync_interval: always) and
# interval (DurableSyncIntervalSeconds 1; sync_interval: 1s):
#   pipelined   one sender, MSGS events as fast as it can write them:
#               stored events/s (acknowledged), p50/p99 time to ack
#               statebus: go test -bench DurableUnicast ./internal/durable
#               (statebusd in-process, real Unix sockets, 170-byte events)
#               NATS: nats bench js pub async --batch 500 (128-byte messages)
#   one at a time  ONE events, each sent after the previous one's ack:
#               p50/p99 time to ack
#               statebus: go test -bench DurableOneAtATime
#               NATS: nats bench js pub sync
#
# It builds nats-server and the nats CLI at pinned versions into a
# temporary folder (as compare.sh), starts two nats-servers on 127.0.0.1
# with their stores there, and removes everything on exit.
set -euo pipefail

RUNS=${RUNS:-3}
MSGS=${MSGS:-100000}
ONE=${ONE:-2000}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
NATS_SERVER_VERSION=v2.15.2
NATSCLI_VERSION=v0.5.0

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbdur.XXXXXX")
bin=$tmp/bin
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "durable.sh: $*" >&2; }
die() { log "$*"; exit 1; }
bounded() { timeout --kill-after=10 "$STEP_TIMEOUT" "$@"; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
num() { printf "$1" "$2" | sed -e ':a' -e 's/^\([0-9]\+\)\([0-9]\{3\}\)/\1,\2/; ta'; }

log "building nats-server $NATS_SERVER_VERSION and nats $NATSCLI_VERSION into $bin"
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION")
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION")
log "building the durable benchmarks"
(cd "$root" && timeout 600 go test -c -o "$bin/durable.test" ./internal/durable)

declare -A port
for pol in always interval; do
	sync=always
	[[ $pol == interval ]] && sync=1s
	mkdir -p "$tmp/js-$pol"
	printf 'listen: 127.0.0.1:-1\njetstream { store_dir: "%s", sync_interval: %s }\n' "$tmp/js-$pol" "$sync" >"$tmp/$pol.conf"
	"$bin/nats-server" -c "$tmp/$pol.conf" >"$tmp/nats-$pol.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 150); do grep -q 'Server is ready' "$tmp/nats-$pol.log" && break; sleep 0.1; done
	port[$pol]=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-$pol.log")
	[[ -n ${port[$pol]} ]] || die "nats-server ($pol) did not start: $(cat "$tmp/nats-$pol.log")"
done

# benchval prints metric $2 of benchmark line $1 of go test output $3.
benchval() { grep -E "^Benchmark$1-" "$3" | awk -v m="$2" '{for (i = 1; i < NF; i++) if ($(i + 1) == m) print $i}' | tail -1; }
# natsval prints the number after "$1" in nats bench output $2.
natsval() { grep -oE "$1 [0-9,.]+" "$2" | tail -1 | sed 's/.* //; s/,//g'; }

declare -A r
add() { r[$1]="${r[$1]:-} $2"; }
for run in $(seq "$RUNS"); do
	for pol in always interval; do
		log "run $run/$RUNS, $pol: statebus pipelined ($MSGS) and one at a time ($ONE)"
		(cd "$root/internal/durable" && bounded "$bin/durable.test" -test.run XXX -test.bench "DurableUnicast/$pol\$" -test.benchtime "${MSGS}x") >"$tmp/sb.out" 2>&1 ||
			die "statebus benchmark failed: $(cat "$tmp/sb.out")"
		add "sb-$pol-rate" "$(benchval "DurableUnicast/$pol" events/s "$tmp/sb.out")"
		add "sb-$pol-p50" "$(benchval "DurableUnicast/$pol" p50-µs "$tmp/sb.out")"
		add "sb-$pol-p99" "$(benchval "DurableUnicast/$pol" p99-µs "$tmp/sb.out")"
		(cd "$root/internal/durable" && bounded "$bin/durable.test" -test.run XXX -test.bench "DurableOneAtATime/$pol\$" -test.benchtime "${ONE}x") >"$tmp/sb1.out" 2>&1 ||
			die "statebus benchmark failed: $(cat "$tmp/sb1.out")"
		add "sb-$pol-1p50" "$(benchval "DurableOneAtATime/$pol" p50-µs "$tmp/sb1.out")"
		add "sb-$pol-1p99" "$(benchval "DurableOneAtATime/$pol" p99-µs "$tmp/sb1.out")"

		log "run $run/$RUNS, $pol: nats bench js pub async ($MSGS) and sync ($ONE)"
		nats=("$bin/nats" --no-context -s "nats://127.0.0.1:${port[$pol]}")
		bounded "${nats[@]}" bench js pub async "dur$run" --stream "dur$run" --create --purge --storage file --replicas 1 \
			--batch 500 --msgs "$MSGS" --size 128B --no-progress >"$tmp/nats.out" 2>&1 || die "nats bench failed: $(cat "$tmp/nats.out")"
		add "nats-$pol-rate" "$(natsval 'publisher stats:' "$tmp/nats.out")"
		add "nats-$pol-p50" "$(natsval 'P50:' "$tmp/nats.out" | awk '{printf "%d", $1}')"
		add "nats-$pol-p99" "$(natsval 'P99:' "$tmp/nats.out" | awk '{printf "%d", $1}')"
		bounded "${nats[@]}" bench js pub sync "one$run" --stream "one$run" --create --purge --storage file --replicas 1 \
			--msgs "$ONE" --size 128B --no-progress >"$tmp/nats1.out" 2>&1 || die "nats bench failed: $(cat "$tmp/nats1.out")"
		add "nats-$pol-1p50" "$(natsval 'P50:' "$tmp/nats1.out" | awk '{printf "%d", $1}')"
		add "nats-$pol-1p99" "$(natsval 'P99:' "$tmp/nats1.out" | awk '{printf "%d", $1}')"
	done
done

row() { # label format key-suffix
	local pol
	for pol in always interval; do
		# shellcheck disable=SC2086
		printf "| %s, %s | %s | %s |\n" "$1" "$pol" "$(num "$2" "$(median ${r[sb-$pol-$3]})")" "$(num "$2" "$(median ${r[nats-$pol-$3]})")"
	done
}
echo
echo "durable statebus $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') vs nats-server $NATS_SERVER_VERSION JetStream (file storage, R1), $(nproc) cores, median of $RUNS interleaved runs"
echo
echo "| row | statebus | NATS |"
echo "|---|---:|---:|"
row "pipelined, $(num %d "$MSGS") events: acknowledged events/s" "%.0f" rate
row "pipelined: time to ack p50 (µs)" "%.0f" p50
row "pipelined: time to ack p99 (µs)" "%.0f" p99
row "one at a time, $(num %d "$ONE"): time to ack p50 (µs)" "%.0f" 1p50
row "one at a time: time to ack p99 (µs)" "%.0f" 1p99
echo
echo "Runs:"
for k in $(printf '%s\n' "${!r[@]}" | sort); do echo "  $k:${r[$k]}"; done
