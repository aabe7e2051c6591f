#!/usr/bin/env bash
# compare.sh runs the same workloads on statebus and on NATS, on this
# machine, and prints one table: each row's median of RUNS runs for both and
# the statebus/NATS ratio.
#
#   bench/compare.sh                 # RUNS=3, the sizes of issue 3
#   RUNS=5 MSGS=200000 bench/compare.sh
#   BASELINE=abc123 bench/compare.sh # also statebus at commit abc123, interleaved
#
# It builds nats-server and the nats CLI at pinned versions from the Go
# module proxy into a temporary folder (they are never dependencies of the
# statebus module), builds statebus and statebusd from this tree, starts
# nats-server on 127.0.0.1 (a free port) and statebusd on a socket in that
# folder, and removes everything on exit. Traffic stays on loopback and the
# Unix socket. Every step is bounded in time.
#
# Rows (128-byte payloads):
#   unicast    1 publisher -> 1 subscriber, MSGS messages: delivered msgs/s
#              statebus bench --mode unicast | nats bench pub + nats bench sub
#   broadcast  1 publisher -> 5 subscribers, FANOUT_MSGS messages each
#              delivered to all 5: delivered msgs/s (NATS: the subscribers'
#              aggregated rate)
#   reqrep     RTTS round trips, one at a time: round trips/s, p50 and p99
#              statebus bench --mode reqrep | nats bench service request + serve
#              (statebus: Client.Request to a HandleRequest responder,
#              the protocol's request/reply, one request in flight)
#
#
# Cross-daemon rows (CLUSTER=1, the default; CLUSTER=0 skips them): a
# cluster of 3 nats-server nodes with JetStream on 127.0.0.1 (routes) and
# two statebusd in federation (Cluster external), d1 on node 1 and d2 on
# node 2. statebus: publishers/requesters on d1, subscribers/responders on
# d2 (statebus bench --sub-pipe-name); NATS: nats bench publishers/
# requesters on node 1, subscribers/service on node 2, the same hop.
#   cluster unicast  1 -> 1 across, CLUSTER_MSGS messages: delivered msgs/s
#                    (statebus: each event acknowledged by d2 to d1 once
#                    written to the subscriber's socket)
#   cluster reqrep   CLUSTER_RTTS round trips across, one at a time
#
# With BASELINE=<git revision>, statebus and statebusd are also built from
# that revision (a temporary git worktree) and run beside the current ones
# in every run, and a second table compares the two: before and after a
# change, measured in the same run.
#
# Needs go, curl (nats-server's monitoring port tells when the NATS
# subscribers are ready), timeout, awk and sed.
#
# NATS measures a subscriber from its first message to its last; statebus
# bench from the first send to the last arrival (slightly stricter).
set -euo pipefail

RUNS=${RUNS:-3}
MSGS=${MSGS:-1000000}
FANOUT_MSGS=${FANOUT_MSGS:-1000000}
FANOUT=${FANOUT:-5}
RTTS=${RTTS:-100000}
CLUSTER=${CLUSTER:-1}
CLUSTER_MSGS=${CLUSTER_MSGS:-200000}
CLUSTER_RTTS=${CLUSTER_RTTS:-20000}
SIZE=128
STEP_TIMEOUT=${STEP_TIMEOUT:-300} # seconds, any one benchmark run
NATS_SERVER_VERSION=v2.15.2
NATSCLI_VERSION=v0.5.0

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbcmp.XXXXXX")
bin=$tmp/bin
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "compare.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# bounded runs a command for at most STEP_TIMEOUT seconds.
bounded() { timeout --kill-after=10 "$STEP_TIMEOUT" "$@"; }

# waitfor polls a shell condition up to $2 seconds (default 15).
waitfor() {
	local i
	for i in $(seq $((${2:-15} * 10))); do
		if eval "$1"; then return 0; fi
		sleep 0.1
	done
	die "timed out waiting for: $1"
}

# median prints the median of its arguments (the lower middle for an even
# count).
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

# num formats $2 with printf format $1 and thousands separators.
num() { printf "$1" "$2" | sed -e ':a' -e 's/^\([0-9]\+\)\([0-9]\{3\}\)/\1,\2/; ta'; }

# jnum prints a number field of statebus bench --json output.
jnum() { grep -m1 "\"$1\":" "$2" | sed 's/.*: *//; s/,$//'; }

# natsnum prints the first number after the words $1 in nats bench output.
natsnum() { grep -oE "$1 [0-9,.]+" "$2" | tail -1 | sed 's/.* //; s/,//g'; }

log "building nats-server $NATS_SERVER_VERSION and nats $NATSCLI_VERSION into $bin"
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION")
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION")
log "building statebus and statebusd from $root"
(cd "$root" && timeout 600 go build -o "$bin/statebus" ./cmd/statebus && timeout 600 go build -o "$bin/statebusd" ./cmd/statebusd)
BASELINE=${BASELINE:-}
if [[ -n $BASELINE ]]; then
	log "building statebus and statebusd at $BASELINE"
	git -C "$root" worktree add --detach -q "$tmp/base" "$BASELINE" || die "cannot check out $BASELINE"
	trap 'git -C "$root" worktree remove --force "$tmp/base" 2>/dev/null; cleanup' EXIT
	mkdir -p "$bin/base"
	(cd "$tmp/base" && timeout 600 go build -o "$bin/base/statebus" ./cmd/statebus && timeout 600 go build -o "$bin/base/statebusd" ./cmd/statebusd)
fi

log "starting nats-server and statebusd"
"$bin/nats-server" -a 127.0.0.1 -p -1 -m -1 >"$tmp/nats-server.log" 2>&1 &
pids+=($!)
waitfor "grep -q 'Server is ready' '$tmp/nats-server.log'"
port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
mport=$(sed -n 's/.*Starting http monitor on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
[[ -n $port && -n $mport ]] || die "cannot find nats-server's ports in its log"
nats=("$bin/nats" --no-context -s "nats://127.0.0.1:$port")

sock=$tmp/bus.sock
"$bin/statebusd" --pipe-name "$sock" --http '' --health-interval 0 --log-level warn >"$tmp/statebusd.log" 2>&1 &
pids+=($!)
waitfor "[[ -S '$sock' ]]"
if [[ -n $BASELINE ]]; then
	"$bin/base/statebusd" --pipe-name "$tmp/base.sock" --http '' --health-interval 0 --log-level warn >"$tmp/base-statebusd.log" 2>&1 &
	pids+=($!)
	waitfor "[[ -S '$tmp/base.sock' ]]"
fi

# natssubs prints how many subscriptions match subject $1 (on the server
# whose monitoring port is $2, default the single one).
natssubs() { curl -fsS "http://127.0.0.1:${2:-$mport}/subsz?subs=1&test=$1" | grep -oE '"total": *[0-9]+' | grep -oE '[0-9]+$'; }

# routed reports whether the server whose monitoring port is $2 has
# interest in subject $1 from its routes (a subscriber on another node).
routed() { [[ $(curl -fsS "http://127.0.0.1:$2/routez?subs=1") == *"\"$1\""* ]]; }

if [[ $CLUSTER == 1 ]]; then
	log "starting a 3-node nats-server cluster with JetStream and two statebusd in federation"
	# A JetStream cluster needs its routes configured: choose the route
	# ports first (ports nothing answers on a moment ago).
	cport=() cmport=() rport=() croutes=""
	for i in 1 2 3; do
		while :; do
			rport[i]=$((20000 + RANDOM % 40000))
			(exec 3<>"/dev/tcp/127.0.0.1/${rport[i]}") 2>/dev/null || break
		done
		croutes+="${croutes:+,}nats://127.0.0.1:${rport[i]}"
	done
	for i in 1 2 3; do
		"$bin/nats-server" -a 127.0.0.1 -p -1 -m -1 -n "c$i" -js -sd "$tmp/js$i" \
			--cluster_name sbcmp --cluster "nats://127.0.0.1:${rport[i]}" --routes "$croutes" >"$tmp/c$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3; do
		waitfor "grep -q 'Server is ready' '$tmp/c$i.log'"
		cport[i]=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/c$i.log")
		cmport[i]=$(sed -n 's/.*Starting http monitor on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/c$i.log")
		[[ -n ${cport[i]} && -n ${cmport[i]} ]] || die "cannot find cluster node $i's ports in its log"
	done
	waitfor "[[ \$(curl -fsS http://127.0.0.1:${cmport[1]}/routez | grep -c '\"rid\"') -ge 2 ]]"
	for i in 1 2; do
		"$bin/statebusd" --pipe-name "$tmp/d$i.sock" --http '' --health-interval 0 --log-level warn \
			--cluster external --cluster-name sbcmp --cluster-node "d$i" --cluster-replicas 3 \
			--cluster-urls "nats://127.0.0.1:${cport[i]}" >"$tmp/d$i.log" 2>&1 &
		pids+=($!)
	done
	# The daemons start serving once JetStream elected its leaders and
	# the ownership buckets exist.
	waitfor "[[ -S '$tmp/d1.sock' && -S '$tmp/d2.sock' ]]" 90 || true
fi

# Results, one value per run.
declare -a sb_uni nats_uni sb_fan nats_fan sb_rr nats_rr sb_p50 nats_p50 sb_p99 nats_p99
declare -a sbc_uni natsc_uni sbc_rr natsc_rr sbc_p50 natsc_p50 sbc_p99 natsc_p99

sb_bench() { # out args...
	local out=$1
	shift
	bounded "${SB_BIN:-$bin}/statebus" bench --pipe-name "${SB_SOCK:-$sock}" --json --size "$SIZE" --timeout "$((STEP_TIMEOUT - 5))s" "$@" >"$out" ||
		die "statebus bench $* failed: $(cat "$out")"
	[[ $(jnum lost "$out") == 0 ]] || die "statebus bench $* lost events"
}

# base_bench runs the baseline's statebus bench against its own statebusd.
base_bench() { SB_BIN=$bin/base SB_SOCK=$tmp/base.sock sb_bench "$@"; }
declare -a base_uni base_fan base_rr base_p50 base_p99

# nats_pubsub runs nats bench sub and pub; with NATS_SUB/NATS_PUB (the
# nats command for each) and NATS_MPORT (the publisher's server's
# monitoring port) they run on different servers of a cluster (then with
# one subscriber: the route carries one interest for all).
nats_pubsub() { # out subject subs msgs
	local out=$1 subj=$2 subs=$3 msgs=$4 sp
	local -a nsub=("${nats[@]}") npub=("${nats[@]}")
	[[ -z ${NATS_SUB:-} ]] || read -ra nsub <<<"$NATS_SUB"
	[[ -z ${NATS_PUB:-} ]] || read -ra npub <<<"$NATS_PUB"
	timeout --kill-after=10 "$STEP_TIMEOUT" "${nsub[@]}" bench sub "$subj" --clients "$subs" --msgs "$msgs" \
		--size "${SIZE}B" --no-progress >"$out" 2>&1 &
	sp=$!
	pids+=("$sp")
	if [[ -n ${NATS_MPORT:-} ]]; then
		waitfor "routed $subj $NATS_MPORT"
	else
		waitfor "[[ \$(natssubs $subj) -ge $subs ]]"
	fi
	bounded "${npub[@]}" bench pub "$subj" --msgs "$msgs" --size "${SIZE}B" --no-progress >"$out.pub" 2>&1 ||
		die "nats bench pub failed: $(cat "$out.pub")"
	wait "$sp" || die "nats bench sub failed (did NATS drop messages to a slow consumer?): $(tail -5 "$out")"
}

# nats_service runs nats bench service serve (with NATS_SUB's command)
# and, once shell condition $4 holds, service request (NATS_PUB's).
nats_service() { # out subject round-trips ready-condition
	local out=$1 subj=$2 rtts=$3 serve
	local -a nsub=("${nats[@]}") npub=("${nats[@]}")
	[[ -z ${NATS_SUB:-} ]] || read -ra nsub <<<"$NATS_SUB"
	[[ -z ${NATS_PUB:-} ]] || read -ra npub <<<"$NATS_PUB"
	timeout --kill-after=10 "$STEP_TIMEOUT" "${nsub[@]}" bench service serve "$subj" --size "${SIZE}B" \
		--no-progress >"$tmp/serve.out" 2>&1 &
	serve=$!
	pids+=("$serve")
	waitfor "$4"
	bounded "${npub[@]}" bench service request "$subj" --msgs "$rtts" --size "${SIZE}B" --no-progress >"$out" 2>&1 ||
		die "nats bench service request failed: $(cat "$out")"
	kill "$serve" 2>/dev/null || true
	wait "$serve" 2>/dev/null || true
}

for run in $(seq "$RUNS"); do
	if [[ -n $BASELINE ]]; then
		log "run $run/$RUNS: baseline $BASELINE: unicast, broadcast, request/reply"
		base_bench "$tmp/base.json" --mode unicast --pubs 1 --subs 1 --msgs "$MSGS"
		base_uni+=("$(jnum msgs_per_sec "$tmp/base.json")")
		base_bench "$tmp/base.json" --mode broadcast --pubs 1 --subs "$FANOUT" --msgs "$FANOUT_MSGS"
		base_fan+=("$(jnum msgs_per_sec "$tmp/base.json")")
		base_bench "$tmp/base.json" --mode reqrep --pubs 1 --subs 1 --msgs "$RTTS"
		base_rr+=("$(jnum msgs_per_sec "$tmp/base.json")")
		base_p50+=("$(jnum p50 "$tmp/base.json")")
		base_p99+=("$(jnum p99 "$tmp/base.json")")
	fi
	log "run $run/$RUNS: unicast 1->1, $MSGS messages"
	sb_bench "$tmp/sb.json" --mode unicast --pubs 1 --subs 1 --msgs "$MSGS"
	sb_uni+=("$(jnum msgs_per_sec "$tmp/sb.json")")
	nats_pubsub "$tmp/nats.out" "uni$run" 1 "$MSGS"
	nats_uni+=("$(natsnum 'subscriber stats:' "$tmp/nats.out")")

	log "run $run/$RUNS: broadcast 1->$FANOUT, $FANOUT_MSGS messages"
	sb_bench "$tmp/sb.json" --mode broadcast --pubs 1 --subs "$FANOUT" --msgs "$FANOUT_MSGS"
	sb_fan+=("$(jnum msgs_per_sec "$tmp/sb.json")")
	nats_pubsub "$tmp/nats.out" "fan$run" "$FANOUT" "$FANOUT_MSGS"
	nats_fan+=("$(natsnum 'aggregated stats:' "$tmp/nats.out")")

	log "run $run/$RUNS: request/reply, $RTTS round trips"
	sb_bench "$tmp/sb.json" --mode reqrep --pubs 1 --subs 1 --msgs "$RTTS"
	sb_rr+=("$(jnum msgs_per_sec "$tmp/sb.json")")
	sb_p50+=("$(jnum p50 "$tmp/sb.json")")
	sb_p99+=("$(jnum p99 "$tmp/sb.json")")
	nats_service "$tmp/nats.out" "rr$run" "$RTTS" "[[ \$(natssubs rr$run) -ge 1 ]]"
	nats_rr+=("$(natsnum 'requester stats:' "$tmp/nats.out")")
	nats_p50+=("$(natsnum 'P50:' "$tmp/nats.out")")
	nats_p99+=("$(natsnum 'P99:' "$tmp/nats.out")")

	if [[ $CLUSTER == 1 ]]; then
		n1="$bin/nats --no-context -s nats://127.0.0.1:${cport[1]}"
		n2="$bin/nats --no-context -s nats://127.0.0.1:${cport[2]}"
		log "run $run/$RUNS: across daemons: unicast 1->1, $CLUSTER_MSGS messages"
		SB_SOCK=$tmp/d1.sock sb_bench "$tmp/sb.json" --sub-pipe-name "$tmp/d2.sock" --mode unicast --pubs 1 --subs 1 --msgs "$CLUSTER_MSGS"
		sbc_uni+=("$(jnum msgs_per_sec "$tmp/sb.json")")
		NATS_SUB=$n2 NATS_PUB=$n1 NATS_MPORT=${cmport[1]} nats_pubsub "$tmp/nats.out" "cuni$run" 1 "$CLUSTER_MSGS"
		natsc_uni+=("$(natsnum 'subscriber stats:' "$tmp/nats.out")")

		log "run $run/$RUNS: across daemons: request/reply, $CLUSTER_RTTS round trips"
		SB_SOCK=$tmp/d1.sock sb_bench "$tmp/sb.json" --sub-pipe-name "$tmp/d2.sock" --mode reqrep --pubs 1 --subs 1 --msgs "$CLUSTER_RTTS"
		sbc_rr+=("$(jnum msgs_per_sec "$tmp/sb.json")")
		sbc_p50+=("$(jnum p50 "$tmp/sb.json")")
		sbc_p99+=("$(jnum p99 "$tmp/sb.json")")
		NATS_SUB=$n2 NATS_PUB=$n1 nats_service "$tmp/nats.out" "crr$run" "$CLUSTER_RTTS" "routed crr$run ${cmport[1]}"
		natsc_rr+=("$(natsnum 'requester stats:' "$tmp/nats.out")")
		natsc_p50+=("$(natsnum 'P50:' "$tmp/nats.out")")
		natsc_p99+=("$(natsnum 'P99:' "$tmp/nats.out")")
	fi
done

# row prints a table row from the runs of both: label, statebus median,
# NATS median, ratio; the runs go to a second listing.
runs=()
row() { # label format statebus-array-name other-array-name [other's name]
	local label=$1 fmt=$2 other=${5:-NATS}
	local -n a=$3 b=$4
	local ma mb
	ma=$(median "${a[@]}")
	mb=$(median "${b[@]}")
	printf "| %s | %s | %s | %.2f |\n" "$label" "$(num "$fmt" "$ma")" "$(num "$fmt" "$mb")" \
		"$(awk -v a="$ma" -v b="$mb" 'BEGIN { print (b > 0 ? a / b : 0) }')"
	runs+=("$label: statebus ${a[*]}; $other ${b[*]}")
}

echo
echo "statebus $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') vs nats-server $NATS_SERVER_VERSION (nats CLI $NATSCLI_VERSION), $(nproc) cores, median of $RUNS runs, ${SIZE}-byte payloads"
echo
echo "| row | statebus | NATS | statebus/NATS |"
echo "|---|---:|---:|---:|"
row "unicast 1->1, $(num %d "$MSGS") msgs: delivered msgs/s" "%.0f" sb_uni nats_uni
row "broadcast 1->$FANOUT, $(num %d "$FANOUT_MSGS") msgs: delivered msgs/s" "%.0f" sb_fan nats_fan
row "request/reply, $(num %d "$RTTS") round trips: round trips/s" "%.0f" sb_rr nats_rr
row "request/reply round trip p50 (µs)" "%.1f" sb_p50 nats_p50
row "request/reply round trip p99 (µs)" "%.1f" sb_p99 nats_p99
if [[ $CLUSTER == 1 ]]; then
	row "across daemons (3-node NATS cluster): unicast 1->1, $(num %d "$CLUSTER_MSGS") msgs: delivered msgs/s" "%.0f" sbc_uni natsc_uni
	row "across daemons: request/reply, $(num %d "$CLUSTER_RTTS") round trips: round trips/s" "%.0f" sbc_rr natsc_rr
	row "across daemons: request/reply round trip p50 (µs)" "%.1f" sbc_p50 natsc_p50
	row "across daemons: request/reply round trip p99 (µs)" "%.1f" sbc_p99 natsc_p99
fi
if [[ -n $BASELINE ]]; then
	echo
	echo "statebus $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') vs statebus $BASELINE, the same runs"
	echo
	echo "| row | statebus now | statebus $BASELINE | now/before |"
	echo "|---|---:|---:|---:|"
	row "unicast 1->1: delivered msgs/s" "%.0f" sb_uni base_uni "statebus $BASELINE"
	row "broadcast 1->$FANOUT: delivered msgs/s" "%.0f" sb_fan base_fan "statebus $BASELINE"
	row "request/reply: round trips/s" "%.0f" sb_rr base_rr "statebus $BASELINE"
	row "request/reply p50 (µs)" "%.1f" sb_p50 base_p50 "statebus $BASELINE"
	row "request/reply p99 (µs)" "%.1f" sb_p99 base_p99 "statebus $BASELINE"
fi
echo
echo "Runs:"
printf '  %s\n' "${runs[@]}"
