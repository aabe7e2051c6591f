#!/usr/bin/env bash
# compare.sh runs the same workloads on statebus and on NATS, on this
# machine, and prints one table: each row's median of RUNS interleaved
# rounds for both and the statebus/NATS ratio.
#
#   bench/compare.sh                 # RUNS=5: every row of issue 15
#   QUICK=1 bench/compare.sh         # small counts, RUNS=2: a smoke run (about a minute)
#   RUNS=3 CLUSTER=0 bench/compare.sh
#   BASELINE=abc123 bench/compare.sh # also statebus at commit abc123, interleaved
#
# It builds nats-server and the nats CLI at pinned versions from the Go
# module proxy into a temporary folder, and there, in a module of its own,
# a small program that times nats.go's Connect and Close (none of them is
# ever a dependency of the statebus module); builds statebus and statebusd
# from this tree, starts nats-server on 127.0.0.1 (a free port) and
# statebusd on a socket in that folder, and removes everything on exit.
# Traffic stays on loopback and the Unix socket. Every step is bounded in
# time (STEP_TIMEOUT seconds), and no round starts that would end after
# DEADLINE seconds from the start (25 minutes: the default counts took 8
# to 12 minutes after the builds, BASELINE included, on the shared 2-core
# development machine at load 10 to 25). A step that fails or loses
# events is reported and left out of its row's median, the script goes on,
# and it exits 1 at the end.
#
# Each round runs every row once, statebus then NATS in odd rounds and NATS
# then statebus in even ones. Rows (statebus bench | nats bench):
#   unicast    1 publisher -> 1 subscriber, 16 B, 128 B and 1 KiB payloads
#              (MSGS messages) and 16 KiB (BIG_MSGS): delivered msgs/s
#              --mode unicast | pub + sub
#   pairs      PAIRS independent publisher -> subscriber pairs, 128 B,
#              PAIR_MSGS messages in all: delivered msgs/s
#              --pairs PAIRS | PAIRS pub + sub pairs on PAIRS subjects at
#              once, their subscribers' rates summed (nats bench has no
#              pairs; each subscriber is timed from its own first message to
#              its last, which favours NATS a little)
#   broadcast  1 publisher -> FANOUT (5) and WIDE (50) subscribers, 128 B,
#              FANOUT_MSGS and WIDE_MSGS messages each delivered to all:
#              delivered msgs/s (NATS: the subscribers' aggregated rate)
#   reqrep     1 requester (RTTS round trips, one at a time): round trips/s,
#              p50 and p99; 8 requesters (RTTS8 in all, each one at a
#              time) to one responder: round trips/s and p50
#              --mode reqrep | service request + service serve
#   connect    CONNECTS connections one after another: p50 of connecting
#              (statebus: connect and register, Dial; NATS: nats.Connect,
#              which returns once the server answered its CONNECT and PING
#              with PONG, one round trip as statebus's Register) and of
#              closing (Close)
#              --mode connect | the nats.go program
# When the client library has the compact framing, the statebus rows use
# it (--framing compact) and the unicast 128 B and broadcast rows get a
# second statebus row with the JSON framing (the .NET clients' path),
# against the same NATS runs; before, every row is the default framing.
#
# Cross-daemon rows (CLUSTER=1, the default; CLUSTER=0 skips them): a
# cluster of 3 nats-server nodes with JetStream on 127.0.0.1 (routes) and
# two statebusd in federation (Cluster external), d1 on node 1 and d2 on
# node 2. statebus: publishers/requesters on d1, subscribers/responders on
# d2 (statebus bench --sub-pipe-name); NATS: nats bench publishers/
# requesters on node 1, subscribers/service on node 2, the same hop.
#   cluster unicast  1 -> 1 across, 128 B, CLUSTER_MSGS messages:
#                    delivered msgs/s (statebus: each event acknowledged
#                    by d2 to d1 once written to the subscriber's socket)
#   cluster reqrep   CLUSTER_RTTS round trips across, one at a time
#
# With BASELINE=<git revision>, statebus and statebusd are also built from
# that revision (a temporary git worktree) and run beside the current ones
# in every round (unicast 128 B, broadcast 1->5, request/reply with one
# requester, in the framing that revision's client uses by default), and a
# second table compares the two: before and after a change, measured in
# the same run. The JSON rows are compared with the baseline too: with a
# baseline from before the compact framing, that is the .NET path now
# against the same path then. (statebus bench itself changed at aae4066:
# it reads the clock for 1 event in 64, not every one; take a baseline
# from after it to compare the bus alone.)
#
# Needs go, curl (nats-server's monitoring port tells when the NATS
# subscribers are ready), timeout, awk and sed.
#
# NATS measures a subscriber from its first message to its last; statebus
# bench from the first send to the last arrival (slightly stricter).
# statebus bench reads the clock for 1 event in 64; nats bench pub/sub
# reads none per message.
set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	# A smoke run: every row and every code path, small counts.
	RUNS=${RUNS:-2} MSGS=${MSGS:-20000} BIG_MSGS=${BIG_MSGS:-2000} PAIR_MSGS=${PAIR_MSGS:-20000}
	FANOUT_MSGS=${FANOUT_MSGS:-4000} WIDE_MSGS=${WIDE_MSGS:-400} RTTS=${RTTS:-1000} RTTS8=${RTTS8:-2000}
	CONNECTS=${CONNECTS:-100} CLUSTER_MSGS=${CLUSTER_MSGS:-5000} CLUSTER_RTTS=${CLUSTER_RTTS:-500}
	STEP_TIMEOUT=${STEP_TIMEOUT:-60}
fi
RUNS=${RUNS:-5}
MSGS=${MSGS:-1000000}          # unicast 16 B, 128 B, 1 KiB
BIG_MSGS=${BIG_MSGS:-100000}   # unicast 16 KiB
PAIRS=${PAIRS:-4}
PAIR_MSGS=${PAIR_MSGS:-1000000} # in all, over the pairs
FANOUT=${FANOUT:-5}
FANOUT_MSGS=${FANOUT_MSGS:-200000}
WIDE=${WIDE:-50}
WIDE_MSGS=${WIDE_MSGS:-20000}
RTTS=${RTTS:-30000}
RTTS8=${RTTS8:-60000} # in all, over the 8 requesters
CONNECTS=${CONNECTS:-3000}
CLUSTER=${CLUSTER:-1}
CLUSTER_MSGS=${CLUSTER_MSGS:-200000}
CLUSTER_RTTS=${CLUSTER_RTTS:-10000}
STEP_TIMEOUT=${STEP_TIMEOUT:-180} # seconds, any one benchmark step
DEADLINE=${DEADLINE:-1500}      # seconds from the start: no round starts that would not end by then
NATS_SERVER_VERSION=v2.15.2
NATSCLI_VERSION=v0.5.0
NATSGO_VERSION=v1.55.0

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

# waitfor polls a shell condition up to $2 seconds (default 15); it
# returns 1 if the condition never held.
waitfor() {
	local i
	for i in $(seq $((${2:-15} * 10))); do
		if eval "$1"; then return 0; fi
		sleep 0.1
	done
	log "timed out waiting for: $1"
	return 1
}

# median prints the median of its arguments (the lower middle for an even
# count), or nothing without any.
median() { (($# > 0)) || return 0; printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

# num formats $2 with printf format $1 and thousands separators.
num() { printf "$1" "$2" | sed -e ':a' -e 's/^\([0-9]\+\)\([0-9]\{3\}\)/\1,\2/; ta'; }

# jnum prints a number field of statebus bench --json output (the first
# with that name).
jnum() { grep -m1 "\"$1\":" "$2" | sed 's/.*: *//; s/,$//'; }

# natsnum prints the last number after the pattern $1 (an ERE) in nats
# bench output.
natsnum() { grep -oE "$1 [0-9,.]+" "$2" | tail -1 | sed 's/.* //; s/,//g'; }

# add appends value $2 to the global array named $1.
add() {
	declare -ga "$1"
	local -n _arr=$1
	if [[ -z $2 ]]; then
		log "no figure for $1 in that output: left out"
		return 0
	fi
	_arr+=("$2")
}

# failed counts a failed step of row key $1 (fail_<key>) and logs $2.
failures=0
failed() {
	local v=fail_$1
	log "FAILED (left out of the medians): $2"
	declare -g "$v=$((${!v:-0} + 1))"
	failures=$((failures + 1))
}

log "building nats-server $NATS_SERVER_VERSION and nats $NATSCLI_VERSION into $bin"
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION")
(cd "$tmp" && GOWORK=off GOBIN=$bin timeout 1200 go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION")

log "building natsconnect (nats.go $NATSGO_VERSION) in a module of its own"
mkdir -p "$tmp/natsconnect"
cat >"$tmp/natsconnect/main.go" <<'GO'
// Command natsconnect times n connections to a NATS server one after
// another: nats.Connect (which returns once the server answered the
// client's CONNECT and PING with PONG), then Flush (one more round trip),
// then Close; it prints the p50 and p99 of each step in microseconds.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("s", nats.DefaultURL, "server URL")
	n := flag.Int("n", 1000, "connections, one after another")
	flag.Parse()
	var conn, flush, closing []time.Duration
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		nc, err := nats.Connect(*url, nats.NoReconnect())
		if err != nil {
			fmt.Fprintf(os.Stderr, "natsconnect: connection %d: %v\n", i+1, err)
			os.Exit(1)
		}
		t1 := time.Now()
		if err := nc.Flush(); err != nil {
			fmt.Fprintf(os.Stderr, "natsconnect: flush %d: %v\n", i+1, err)
			os.Exit(1)
		}
		t2 := time.Now()
		nc.Close()
		t3 := time.Now()
		conn, flush, closing = append(conn, t1.Sub(t0)), append(flush, t2.Sub(t0)), append(closing, t3.Sub(t2))
	}
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"connect", conn}, {"connect_flush", flush}, {"close", closing}} {
		slices.Sort(s.d)
		q := func(p float64) float64 {
			i := int(p*float64(len(s.d))+0.999999) - 1
			return float64(s.d[max(i, 0)].Nanoseconds()) / 1e3
		}
		fmt.Printf("%s_p50: %.1f\n%s_p99: %.1f\n", s.name, q(0.5), s.name, q(0.99))
	}
}
GO
(
	cd "$tmp/natsconnect"
	export GOWORK=off GOFLAGS=-mod=mod
	printf 'module natsconnect\n\ngo 1.24\n\nrequire github.com/nats-io/nats.go %s\n' "$NATSGO_VERSION" >go.mod
	cp "$root/go.sum" go.sum # known checksums; tidy keeps what it needs
	timeout 600 go mod tidy && timeout 600 go build -o "$bin/natsconnect" .
) || die "cannot build natsconnect"

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

# The statebus rows use the compact framing when this tree's client has
# it, and a JSON row beside the unicast 128 B and broadcast ones.
framing=() jsonrows=0
if timeout 60 "$bin/statebus" bench --inproc --framing compact --msgs 10 --json >/dev/null 2>"$tmp/probe.err"; then
	framing=(--framing compact) jsonrows=1
	log "the client has the compact framing: statebus rows use it, with JSON rows beside"
else
	log "the client has no compact framing ($(head -1 "$tmp/probe.err")): statebus rows use its default, no JSON rows"
fi

log "starting nats-server and statebusd"
"$bin/nats-server" -a 127.0.0.1 -p -1 -m -1 >"$tmp/nats-server.log" 2>&1 &
pids+=($!)
waitfor "grep -q 'Server is ready' '$tmp/nats-server.log'" || die "nats-server did not start: $(tail -5 "$tmp/nats-server.log")"
port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
mport=$(sed -n 's/.*Starting http monitor on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats-server.log")
[[ -n $port && -n $mport ]] || die "cannot find nats-server's ports in its log"
nats=("$bin/nats" --no-context -s "nats://127.0.0.1:$port")

sock=$tmp/bus.sock
"$bin/statebusd" --pipe-name "$sock" --http '' --health-interval 0 --log-level warn >"$tmp/statebusd.log" 2>&1 &
pids+=($!)
waitfor "[[ -S '$sock' ]]" || die "statebusd did not start: $(tail -5 "$tmp/statebusd.log")"
if [[ -n $BASELINE ]]; then
	"$bin/base/statebusd" --pipe-name "$tmp/base.sock" --http '' --health-interval 0 --log-level warn >"$tmp/base-statebusd.log" 2>&1 &
	pids+=($!)
	waitfor "[[ -S '$tmp/base.sock' ]]" || die "the baseline statebusd did not start"
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
		waitfor "grep -q 'Server is ready' '$tmp/c$i.log'" || die "cluster node $i did not start: $(tail -5 "$tmp/c$i.log")"
		cport[i]=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/c$i.log")
		cmport[i]=$(sed -n 's/.*Starting http monitor on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/c$i.log")
		[[ -n ${cport[i]} && -n ${cmport[i]} ]] || die "cannot find cluster node $i's ports in its log"
	done
	waitfor "[[ \$(curl -fsS http://127.0.0.1:${cmport[1]}/routez | grep -c '\"rid\"') -ge 2 ]]" || die "the cluster's routes did not form"
	for i in 1 2; do
		"$bin/statebusd" --pipe-name "$tmp/d$i.sock" --http '' --health-interval 0 --log-level warn \
			--cluster external --cluster-name sbcmp --cluster-node "d$i" --cluster-replicas 3 \
			--cluster-urls "nats://127.0.0.1:${cport[i]}" >"$tmp/d$i.log" 2>&1 &
		pids+=($!)
	done
	# The daemons start serving once JetStream elected its leaders and
	# the ownership buckets exist.
	waitfor "[[ -S '$tmp/d1.sock' && -S '$tmp/d2.sock' ]]" 90 || die "the federated statebusd did not start: $(tail -3 "$tmp/d1.log" "$tmp/d2.log")"
fi

# sb_bench runs statebus bench with args (SB_BIN and SB_SOCK choose
# another binary and socket), its --json output in $tmp/sb.json. A run that
# fails or loses events (statebus bench then exits 1) counts as a failure
# of row $1 and returns 1.
sb_bench() { # key args...
	local key=$1 out=$tmp/sb.json
	shift
	if ! bounded "${SB_BIN:-$bin}/statebus" bench --pipe-name "${SB_SOCK:-$sock}" --json \
		--timeout "$((STEP_TIMEOUT - 15))s" "$@" >"$out" 2>"$out.err"; then
		failed "$key" "statebus bench $*: $(tail -3 "$out.err")"
		return 1
	fi
}

# sb runs statebus bench in this tree's framing and records msgs/s, p50
# and p99 as sb_<key>, sb_<key>__p50, sb_<key>__p99 (connect: the close
# p50 as sb_<key>__close too). SB_FRAMING=json runs the JSON framing.
sb() { # key args...
	local key=sb_$1 f=("${framing[@]}")
	shift
	[[ -z ${SB_FRAMING:-} ]] || f=(--framing "$SB_FRAMING")
	sb_bench "$key" "${f[@]}" "$@" || return 0
	add "$key" "$(jnum msgs_per_sec "$tmp/sb.json")"
	add "${key}__p50" "$(jnum p50 "$tmp/sb.json")"
	add "${key}__p99" "$(jnum p99 "$tmp/sb.json")"
	if grep -q '"close_latency_us"' "$tmp/sb.json"; then
		add "${key}__close" "$(grep -A1 '"close_latency_us"' "$tmp/sb.json" | tail -1 | sed 's/.*: *//; s/,$//')"
	fi
}

# base runs the baseline's statebus bench against its own statebusd, in
# its default framing.
base() { # key args...
	local key=base_$1
	shift
	SB_BIN=$bin/base SB_SOCK=$tmp/base.sock sb_bench "$key" "$@" || return 0
	add "$key" "$(jnum msgs_per_sec "$tmp/sb.json")"
	add "${key}__p50" "$(jnum p50 "$tmp/sb.json")"
	add "${key}__p99" "$(jnum p99 "$tmp/sb.json")"
}

# natscmds sets nsub and npub, the nats commands of the subscribers
# (servers) and the publishers (requesters): NATS_SUB and NATS_PUB put
# them on different servers of a cluster.
natscmds() {
	nsub=("${nats[@]}") npub=("${nats[@]}")
	[[ -z ${NATS_SUB:-} ]] || read -ra nsub <<<"$NATS_SUB"
	[[ -z ${NATS_PUB:-} ]] || read -ra npub <<<"$NATS_PUB"
}

# stopbg ends background steps $@ (their timeout processes) and reaps them.
stopbg() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# nats_pubsub runs nats bench sub (subs subscribers) and pub on subject
# and records the subscribers' (aggregated) msgs/s as nats_<key>. With
# NATS_MPORT (the publisher's server's monitoring port) the subscriber is
# on another server of a cluster (then with one subscriber: the route
# carries one interest for all).
nats_pubsub() { # key subject subs msgs size
	local key=nats_$1 subj=$2 subs=$3 msgs=$4 size=$5 out=$tmp/nats.out sp ready
	local -a nsub npub
	natscmds
	timeout --kill-after=10 "$STEP_TIMEOUT" "${nsub[@]}" bench sub "$subj" --clients "$subs" --msgs "$msgs" \
		--size "$size" --no-progress >"$out" 2>&1 &
	sp=$!
	pids+=("$sp")
	ready="[[ \$(natssubs $subj) -ge $subs ]]"
	[[ -z ${NATS_MPORT:-} ]] || ready="routed $subj $NATS_MPORT"
	if ! waitfor "$ready" 30; then
		stopbg "$sp"
		failed "$key" "nats bench sub $subj did not subscribe: $(tail -3 "$out")"
		return 0
	fi
	if ! bounded "${npub[@]}" bench pub "$subj" --msgs "$msgs" --size "$size" --no-progress >"$out.pub" 2>&1; then
		stopbg "$sp"
		failed "$key" "nats bench pub $subj: $(tail -3 "$out.pub")"
		return 0
	fi
	if ! wait "$sp"; then
		failed "$key" "nats bench sub $subj (did NATS drop messages to a slow consumer?): $(tail -3 "$out")"
		return 0
	fi
	add "$key" "$(natsnum 'stats:' "$out")"
}

# nats_pairs runs n nats bench sub/pub pairs at once, pair k on subject
# <prefix>.k with its share of msgs, and records the sum of the
# subscribers' msgs/s as nats_<key>.
nats_pairs() { # key prefix n msgs size
	local key=nats_$1 prefix=$2 n=$3 msgs=$4 size=$5 k ok=1 sum=0 v
	local -a nsub npub sps pps
	natscmds
	# half starts side (sub or pub) of every pair in the background, each
	# with its share of msgs, and adds their pids to the array named $1.
	half() { # pid-array side ext command...
		local -n _p=$1
		local side=$2 ext=$3 k
		shift 3
		for k in $(seq "$n"); do
			timeout --kill-after=10 "$STEP_TIMEOUT" "$@" bench "$side" "$prefix.$k" \
				--msgs $((msgs / n + (k <= msgs % n ? 1 : 0))) --size "$size" --no-progress >"$tmp/pair$k.$ext" 2>&1 &
			_p+=($!)
			pids+=($!)
		done
	}
	half sps sub out "${nsub[@]}"
	for k in $(seq "$n"); do
		waitfor "[[ \$(natssubs $prefix.$k) -ge 1 ]]" 30 || ok=0
	done
	if ((ok)); then
		half pps pub pub "${npub[@]}"
		for k in "${pps[@]}" "${sps[@]}"; do
			wait "$k" || ok=0
		done
	fi
	if ((!ok)); then
		stopbg "${sps[@]}" "${pps[@]}"
		failed "$key" "nats bench pairs on $prefix.*: $(tail -qn 2 "$tmp"/pair*.out "$tmp"/pair*.pub 2>/dev/null | tail -4)"
		return 0
	fi
	for k in $(seq "$n"); do
		v=$(natsnum 'stats:' "$tmp/pair$k.out")
		sum=$(awk -v a="$sum" -v b="$v" 'BEGIN { printf "%.0f", a + b }')
	done
	add "$key" "$sum"
}

# nats_service runs nats bench service serve (with NATS_SUB's command)
# and, once shell condition $5 holds, service request with clients
# requesters (NATS_PUB's); it records round trips/s, p50 and p99 as
# nats_<key>, nats_<key>__p50, nats_<key>__p99.
nats_service() { # key subject round-trips clients ready-condition
	local key=nats_$1 subj=$2 rtts=$3 clients=$4 out=$tmp/nats.out serve
	local -a nsub npub
	natscmds
	timeout --kill-after=10 "$STEP_TIMEOUT" "${nsub[@]}" bench service serve "$subj" --size 128B \
		--no-progress >"$tmp/serve.out" 2>&1 &
	serve=$!
	pids+=("$serve")
	if ! waitfor "$5" 30; then
		stopbg "$serve"
		failed "$key" "nats bench service serve $subj did not start: $(tail -3 "$tmp/serve.out")"
		return 0
	fi
	if ! bounded "${npub[@]}" bench service request "$subj" --clients "$clients" --msgs "$rtts" --size 128B \
		--no-progress >"$out" 2>&1; then
		stopbg "$serve"
		failed "$key" "nats bench service request $subj: $(tail -3 "$out")"
		return 0
	fi
	stopbg "$serve"
	add "$key" "$(natsnum 'stats:' "$out")"
	add "${key}__p50" "$(natsnum 'P50:?' "$out")"
	add "${key}__p99" "$(natsnum 'P99:?' "$out")"
}

# nats_connect times CONNECTS connections with natsconnect: nats_<key>__p50
# and __p99 (nats.Connect), __flush (Connect and Flush, p50), __close
# (Close, p50).
nats_connect() { # key
	local key=nats_$1 out=$tmp/nats.out
	if ! bounded "$bin/natsconnect" -s "nats://127.0.0.1:$port" -n "$CONNECTS" >"$out" 2>&1; then
		failed "$key" "natsconnect: $(tail -3 "$out")"
		return 0
	fi
	add "${key}__p50" "$(sed -n 's/^connect_p50: //p' "$out")"
	add "${key}__p99" "$(sed -n 's/^connect_p99: //p' "$out")"
	add "${key}__flush" "$(sed -n 's/^connect_flush_p50: //p' "$out")"
	add "${key}__close" "$(sed -n 's/^close_p50: //p' "$out")"
}

# both runs a statebus step and a NATS step (shell commands): statebus
# first in odd rounds, NATS first in even ones.
both() {
	if ((run % 2)); then
		eval "$1"
		eval "$2"
	else
		eval "$2"
		eval "$1"
	fi
}

# sbjson runs a statebus step in the JSON framing, when there are JSON rows.
sbjson() { ((jsonrows)) || return 0; SB_FRAMING=json sb "$@"; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rounds=0 cut="" round_took=0
for run in $(seq "$RUNS"); do
	# A round takes about as long as the one before: none starts that
	# would end after DEADLINE.
	if ((run > 1 && SECONDS + round_took > DEADLINE)); then
		cut="stopped after $rounds of $RUNS rounds: another would end after DEADLINE=${DEADLINE}s"
		log "$cut"
		break
	fi
	round_start=$SECONDS
	r="round $run/$RUNS"
	if [[ -n $BASELINE ]]; then
		log "$r: baseline $BASELINE: unicast, broadcast, request/reply"
		base uni128 --mode unicast --pubs 1 --subs 1 --msgs "$MSGS" --size 128
		base fan --mode broadcast --pubs 1 --subs "$FANOUT" --msgs "$FANOUT_MSGS" --size 128
		base rr1 --mode reqrep --pubs 1 --subs 1 --msgs "$RTTS" --size 128
	fi
	for size in 16 128 1024 16384; do
		m=$MSGS
		((size < 16384)) || m=$BIG_MSGS
		log "$r: unicast 1->1, $size B, $m messages"
		both "sb uni$size --mode unicast --msgs $m --size $size; ((size != 128)) || sbjson uni128json --mode unicast --msgs $m --size 128" \
			"nats_pubsub uni$size uni$size.$run 1 $m $size"
	done
	log "$r: $PAIRS independent pairs, 128 B, $PAIR_MSGS messages in all"
	both "sb pairs --pairs $PAIRS --msgs $PAIR_MSGS --size 128" "nats_pairs pairs pairs$run $PAIRS $PAIR_MSGS 128"
	log "$r: broadcast 1->$FANOUT, $FANOUT_MSGS messages"
	both "sb fan --mode broadcast --subs $FANOUT --msgs $FANOUT_MSGS --size 128; sbjson fanjson --mode broadcast --subs $FANOUT --msgs $FANOUT_MSGS --size 128" \
		"nats_pubsub fan fan$run $FANOUT $FANOUT_MSGS 128"
	log "$r: broadcast 1->$WIDE, $WIDE_MSGS messages"
	both "sb wide --mode broadcast --subs $WIDE --msgs $WIDE_MSGS --size 128; sbjson widejson --mode broadcast --subs $WIDE --msgs $WIDE_MSGS --size 128" \
		"nats_pubsub wide wide$run $WIDE $WIDE_MSGS 128"
	log "$r: request/reply, 1 requester, $RTTS round trips"
	both "sb rr1 --mode reqrep --pubs 1 --subs 1 --msgs $RTTS --size 128" \
		"nats_service rr1 rr$run $RTTS 1 '[[ \$(natssubs rr$run) -ge 1 ]]'"
	log "$r: request/reply, 8 requesters, $RTTS8 round trips in all"
	both "sb rr8 --mode reqrep --pubs 8 --subs 1 --msgs $RTTS8 --size 128" \
		"nats_service rr8 rrr$run $RTTS8 8 '[[ \$(natssubs rrr$run) -ge 1 ]]'"
	log "$r: connect and close, $CONNECTS connections one after another"
	both "sb conn --mode connect --msgs $CONNECTS" "nats_connect conn"

	if [[ $CLUSTER == 1 ]]; then
		n1="$bin/nats --no-context -s nats://127.0.0.1:${cport[1]}"
		n2="$bin/nats --no-context -s nats://127.0.0.1:${cport[2]}"
		log "$r: across daemons: unicast 1->1, $CLUSTER_MSGS messages"
		both "SB_SOCK=$tmp/d1.sock sb cuni --sub-pipe-name $tmp/d2.sock --mode unicast --msgs $CLUSTER_MSGS --size 128" \
			"NATS_SUB='$n2' NATS_PUB='$n1' NATS_MPORT=${cmport[1]} nats_pubsub cuni cuni$run 1 $CLUSTER_MSGS 128"
		log "$r: across daemons: request/reply, $CLUSTER_RTTS round trips"
		both "SB_SOCK=$tmp/d1.sock sb crr --sub-pipe-name $tmp/d2.sock --mode reqrep --msgs $CLUSTER_RTTS --size 128" \
			"NATS_SUB='$n2' NATS_PUB='$n1' nats_service crr crr$run $CLUSTER_RTTS 1 'routed crr$run ${cmport[1]}'"
	fi
	rounds=$run round_took=$((SECONDS - round_start))
	log "$r took ${round_took}s"
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# row prints a table row: label, statebus median, NATS median, ratio (n/a
# where a side has no successful run); the runs go to a second listing.
runs=()
row() { # label format statebus-array NATS-array [other's name]
	local label=$1 fmt=$2 other=${5:-NATS} ma mb fa fb note="" ratio=n/a
	declare -ga "$3" "$4"
	local -n a=$3 b=$4
	fa=fail_${3%%__*} fb=fail_${4%%__*}
	((${!fa:-0} == 0)) || note+=" (statebus: ${!fa} of $rounds runs failed)"
	((${!fb:-0} == 0)) || note+=" ($other: ${!fb} of $rounds runs failed)"
	ma=$(median "${a[@]}")
	mb=$(median "${b[@]}")
	if [[ -n $ma && -n $mb ]]; then
		ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
	fi
	printf "| %s%s | %s | %s | %s |\n" "$label" "$note" "$([[ -n $ma ]] && num "$fmt" "$ma" || echo n/a)" \
		"$([[ -n $mb ]] && num "$fmt" "$mb" || echo n/a)" "$ratio"
	runs+=("$label: statebus ${a[*]}; $other ${b[*]}")
}

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
fr="the default framing: the client has no compact framing"
((!jsonrows)) || fr="compact framing, JSON framing where marked"
echo
echo "statebus $rev ($fr) vs nats-server $NATS_SERVER_VERSION (nats CLI $NATSCLI_VERSION, nats.go $NATSGO_VERSION), median of $rounds interleaved rounds${cut:+ ($cut)}"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr); load average $load0 at the start, $load1 at the end; $started to $(date -u '+%H:%M UTC')"
echo "counts: MSGS=$MSGS BIG_MSGS=$BIG_MSGS PAIR_MSGS=$PAIR_MSGS FANOUT_MSGS=$FANOUT_MSGS WIDE_MSGS=$WIDE_MSGS RTTS=$RTTS RTTS8=$RTTS8 CONNECTS=$CONNECTS$( ((QUICK)) && echo " (QUICK=1)")"
echo
echo "| row | statebus | NATS | statebus/NATS |"
echo "|---|---:|---:|---:|"
for size in 16 128 1024 16384; do
	m=$MSGS label="$size B"
	((size < 16384)) || m=$BIG_MSGS
	((size != 1024)) || label="1 KiB"
	((size != 16384)) || label="16 KiB"
	row "unicast 1->1, $label, $(num %d "$m") msgs: delivered msgs/s" "%.0f" "sb_uni$size" "nats_uni$size"
	if ((size == 128 && jsonrows)); then
		row "unicast 1->1, 128 B, JSON framing (.NET path): delivered msgs/s" "%.0f" sb_uni128json nats_uni128
	fi
done
row "$PAIRS independent pairs, 128 B, $(num %d "$PAIR_MSGS") msgs in all: delivered msgs/s (NATS: sum of $PAIRS pub/sub pairs)" "%.0f" sb_pairs nats_pairs
row "broadcast 1->$FANOUT, 128 B, $(num %d "$FANOUT_MSGS") msgs: delivered msgs/s" "%.0f" sb_fan nats_fan
((!jsonrows)) || row "broadcast 1->$FANOUT, JSON framing (.NET path): delivered msgs/s" "%.0f" sb_fanjson nats_fan
row "broadcast 1->$WIDE, 128 B, $(num %d "$WIDE_MSGS") msgs: delivered msgs/s" "%.0f" sb_wide nats_wide
((!jsonrows)) || row "broadcast 1->$WIDE, JSON framing (.NET path): delivered msgs/s" "%.0f" sb_widejson nats_wide
row "request/reply, 1 requester, $(num %d "$RTTS") round trips: round trips/s" "%.0f" sb_rr1 nats_rr1
row "request/reply, 1 requester: p50 (µs, lower is better)" "%.1f" sb_rr1__p50 nats_rr1__p50
row "request/reply, 1 requester: p99 (µs, lower is better)" "%.1f" sb_rr1__p99 nats_rr1__p99
row "request/reply, 8 requesters, $(num %d "$RTTS8") round trips: round trips/s" "%.0f" sb_rr8 nats_rr8
row "request/reply, 8 requesters: p50 (µs, lower is better)" "%.1f" sb_rr8__p50 nats_rr8__p50
row "connect+register p50 (µs, lower is better; NATS: nats.Connect)" "%.1f" sb_conn__p50 nats_conn__p50
row "connect+register p99 (µs, lower is better)" "%.1f" sb_conn__p99 nats_conn__p99
row "close p50 (µs, lower is better)" "%.1f" sb_conn__close nats_conn__close
if [[ $CLUSTER == 1 ]]; then
	row "across daemons (3-node NATS cluster): unicast 1->1, $(num %d "$CLUSTER_MSGS") msgs: delivered msgs/s" "%.0f" sb_cuni nats_cuni
	row "across daemons: request/reply, $(num %d "$CLUSTER_RTTS") round trips: round trips/s" "%.0f" sb_crr nats_crr
	row "across daemons: request/reply round trip p50 (µs)" "%.1f" sb_crr__p50 nats_crr__p50
	row "across daemons: request/reply round trip p99 (µs)" "%.1f" sb_crr__p99 nats_crr__p99
fi
declare -ga nats_conn__flush
echo
echo "NATS connect and Flush (a second round trip) p50: $(median "${nats_conn__flush[@]}") µs"
if [[ -n $BASELINE ]]; then
	echo
	echo "statebus $rev vs statebus $BASELINE, the same rounds (128 B; the baseline in its default framing)"
	echo
	echo "| row | statebus now | statebus $BASELINE | now/before |"
	echo "|---|---:|---:|---:|"
	row "unicast 1->1: delivered msgs/s" "%.0f" sb_uni128 base_uni128 "statebus $BASELINE"
	((!jsonrows)) || row "unicast 1->1, now in the JSON framing (.NET path): delivered msgs/s" "%.0f" sb_uni128json base_uni128 "statebus $BASELINE"
	row "broadcast 1->$FANOUT: delivered msgs/s" "%.0f" sb_fan base_fan "statebus $BASELINE"
	((!jsonrows)) || row "broadcast 1->$FANOUT, now in the JSON framing (.NET path): delivered msgs/s" "%.0f" sb_fanjson base_fan "statebus $BASELINE"
	row "request/reply: round trips/s" "%.0f" sb_rr1 base_rr1 "statebus $BASELINE"
	row "request/reply p50 (µs)" "%.1f" sb_rr1__p50 base_rr1__p50 "statebus $BASELINE"
	row "request/reply p99 (µs)" "%.1f" sb_rr1__p99 base_rr1__p99 "statebus $BASELINE"
fi
echo
echo "Runs:"
printf '  %s\n' "${runs[@]}"
if ((failures > 0)); then
	log "$failures steps failed (see FAILED above): their rows are medians of the other runs"
	exit 1
fi
