#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR  # lib/*.sh, from any directory
# Side-by-side benchmark: limpet vs HAProxy vs nginx in front of the same
# three demo backends, measured with wrk. See benches/compare/README.md.
#
#   sudo benches/compare/run.sh                        # the reference run (~19 min on 2 CPUs + build)
#   sudo ALLOW_DIRTY=1 ROUNDS=1 DURATION=5s benches/compare/run.sh   # a quick look
#   benches/compare/report.sh results-<date>.jsonl     # the table again, also of a run that stopped
#
# It measures the committed tree: with uncommitted changes it refuses to run
# unless ALLOW_DIRTY=1 (the report then names the diff's sha256).
#
# This driver fills in the configurations from templates/, measures every
# (scenario, balancer, round) with lib/measure.sh (and, after the last round,
# counts the balancer's system calls with lib/syscalls.sh) and appends each
# result to RESULTS as one JSON line as soon as it is taken; at the end
# report.sh turns those lines into the Markdown report.
#
# Environment:
#   DURATION     wrk -d of each measured run (default 10s)
#   WARMUP       warm-up before each measured run (default 2s)
#   ROUNDS       rounds per scenario, balancer order rotated each round (default 3);
#                the report shows the median over rounds
#   CONNECTIONS  wrk -c (default 64)
#   THREADS      wrk -t (default: the number of CPUs wrk runs on, so 1 on 2 CPUs)
#   WORKERS      worker threads/processes of every balancer (default: half the
#                CPUs, at least 1)
#   PIN          auto (default): with at least 2 CPUs, the balancer runs on CPUs
#                0..WORKERS-1 and wrk + demo nodes on the others; 0: no pinning
#   BALANCERS    which balancers (default "limpet haproxy nginx"); with LIMPET_B
#                also limpet_b
#   LIMPET_B     a second limpet binary (another build), measured as balancer
#                limpet_b beside the one built from the tree: an A/B comparison
#                in one run, rounds interleaved (BALANCERS="limpet limpet_b haproxy")
#   SCENARIOS    which scenarios (default all: "baseline round_robin cookie
#                jvm_route ip_hash learn_hit learn_new tls_keepalive tls_handshake")
#   PORT_BASE    demo nodes listen on PORT_BASE+1..+3 (default 19000); the
#                balancer on PORT_BASE+80 (HTTPS in the tls_* scenarios),
#                limpet's admin on PORT_BASE+90
#   OUT          the Markdown report (default benches/compare/results-<date>.md)
#   RESULTS      one JSON line per run (default: OUT with .jsonl for .md);
#                started afresh by every run of this script
#   ALLOW_DIRTY=1  run on a tree with uncommitted changes
#   KEEP_TMP=1   keep the temporary directory (configs, logs, raw wrk output)
#   QUIET_IDLE_PCT, WAIT_QUIET   before each measured run, wait up to WAIT_QUIET
#                seconds (default 60) for the machine to be QUIET_IDLE_PCT % idle
#                (default 90): a compile running next to the benchmark skews it
#   LB_CPU_PCT   cap every balancer at this % of each of its CPUs (a cgroup CPU
#                quota per LB_CPU_PERIOD_US, default 2000; root), so that the
#                balancer sets the pace, not the load side (lib/cap.sh); default: no cap
#   RATE         pace the measured runs (templates/pace.lua): requests leave on a
#                Poisson schedule of RATE req/s, so every balancer is offered the same
#                load and p50/p99 are taken at it; default: unpaced, each connection
#                sends as soon as its response came
#   SYSCALLS     1 (default): after the last round's measured run of each balancer,
#                a SYSCALLS_DURATION (default 2s) wrk run with its system calls
#                counted (perf stat, or strace -c); 0: no such run
#
# Only loopback addresses are used; every load run is bounded by wrk -d.
# Exit status 1 if any run saw a non-2xx response, a socket error, or
# requests that went where the scenario says they must not.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

exec {LOGFD}>&2   # log() writes here even from inside a redirected block (the EXIT trap may run there)
log() { printf '%s\n' "$*" >&"$LOGFD"; }
die() { log "run.sh: $*"; exit 1; }

# shellcheck source=lib/scenarios.sh
source "$here/lib/scenarios.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
BALANCERS=${BALANCERS:-"limpet haproxy nginx"}
SCENARIOS=${SCENARIOS:-all}
[[ $SCENARIOS == all ]] && SCENARIOS=$ALL_SCENARIOS
PORT_BASE=${PORT_BASE:-19000}
PIN=${PIN:-auto}
LIMPET_B=${LIMPET_B:-}
NODES=3        # the templates name node1..node3
MAXCONN=4096   # client connections at once, all three balancers (wrk uses $CONNECTIONS)
LB_PORT=$((PORT_BASE + 80))
LB_ADDR=127.0.0.1:${LB_PORT}
ADMIN_ADDR=127.0.0.1:$((PORT_BASE + 90))
HAPROXY_STATS_PORT=$((PORT_BASE + 91))   # HAProxy's runtime API (its counterpart of limpet's admin)
NODE2=127.0.0.1:$((PORT_BASE + 2))
OUT=${OUT:-$here/results-$(date +%F).md}
RESULTS=${RESULTS:-${OUT%.md}.jsonl}
REPORTED=      # set once report.sh has run
QUIET_IDLE_PCT=${QUIET_IDLE_PCT:-90}   # a measured run starts when the machine is this idle...
WAIT_QUIET=${WAIT_QUIET:-60}           # ...or after waiting this many seconds
SYSCALLS=${SYSCALLS:-1}                # count system calls on an extra run...
SYSCALLS_DURATION=${SYSCALLS_DURATION:-2s}   # ...this long

for d in "$DURATION" "$WARMUP" "$SYSCALLS_DURATION"; do
    [[ $d =~ ^[0-9]+[smh]?$ ]] || die "durations look like 10s, 30s or 1m, not \`$d\`"
done
for v in ROUNDS CONNECTIONS PORT_BASE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not \`${!v}\`"
done
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario \`$s\` (known: $ALL_SCENARIOS)"
done
for b in $BALANCERS; do
    [[ $b == limpet || $b == haproxy || $b == nginx || ($b == limpet_b && -n $LIMPET_B) ]] ||
        die "unknown balancer \`$b\` (known: limpet haproxy nginx, and limpet_b with LIMPET_B)"
done
if [[ -n $LIMPET_B ]]; then
    [[ -x $LIMPET_B ]] || die "LIMPET_B=$LIMPET_B is not an executable"
    LIMPET_B=$(realpath "$LIMPET_B")
    [[ " $BALANCERS " == *" limpet_b "* ]] || die "LIMPET_B is set: add limpet_b to BALANCERS"
fi
[[ $PIN == auto || $PIN == 0 ]] || die "PIN is \`auto\` or \`0\`, not \`$PIN\`"
[[ $SYSCALLS == 1 || $SYSCALLS == 0 ]] || die "SYSCALLS is \`1\` or \`0\`, not \`$SYSCALLS\`"
RATE=${RATE:-}
if [[ -n $RATE ]]; then
    [[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive number of requests per second, not \`$RATE\`"
fi

# --------------------------------------------------------------------------
# the committed tree
# --------------------------------------------------------------------------
tree_changes() { # `git status --porcelain`, minus untracked result files of this benchmark
    git -C "$repo" status --porcelain --untracked-files=all |
        grep -v -E '^\?\? benches/compare/results-' || true
}
diff_sha() { git -C "$repo" diff HEAD | sha256sum | cut -d' ' -f1; }

git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || die "$repo is not a git work tree"
V_GIT=$(git -C "$repo" rev-parse --short HEAD)
CHANGES=$(tree_changes)
if [[ -n $CHANGES ]]; then
    if [[ ${ALLOW_DIRTY:-0} != 1 ]]; then
        log "$CHANGES"
        die "the work tree has uncommitted changes (above): commit them, or set ALLOW_DIRTY=1 for a run whose report says so"
    fi
    DIFF_SHA=$(diff_sha)
    TREE="uncommitted changes, diff sha256 $DIFF_SHA"
    untracked=$(grep -c '^??' <<<"$CHANGES" || true)
    if ((untracked > 0)); then
        TREE="$TREE (+ $untracked untracked files, not in the hash)"
    fi
else
    DIFF_SHA=
    TREE="clean"
fi

# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------
TLS=0   # 1 when a tls_* scenario runs: a certificate, and openssl to make and probe it
[[ " $SCENARIOS " == *" tls_"* ]] && TLS=1
tools=(haproxy nginx wrk curl taskset jq)
((TLS)) && tools+=(openssl)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        pkgs=("${missing[@]/taskset/util-linux}")
        log "installing: ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
        # Debian's packages may start their system services; this benchmark
        # starts its own instances, so nothing else needs to run.
    else
        die "missing tools: ${missing[*]} (run as root to install them with apt-get, or: apt-get install -y ${missing[*]/taskset/util-linux})"
    fi
fi
# Counting system calls needs perf or strace; without them (and without
# root to install them) the run goes on and the report says they were not counted.
if [[ $SYSCALLS == 1 ]] && ! command -v perf >/dev/null 2>&1 && ! command -v strace >/dev/null 2>&1 &&
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing: linux-perf strace (to count system calls; SYSCALLS=0 skips them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq linux-perf strace >/dev/null 2>&1 || apt-get install -y -qq strace >/dev/null 2>&1 ||
        log "could not install linux-perf or strace: system calls will not be counted"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is needed to build limpet"

# --------------------------------------------------------------------------
# CPUs: workers and pinning
# --------------------------------------------------------------------------
expand_cpus() { # "0-3,6" → "0 1 2 3 6"
    local part parts cpus=() c
    IFS=',' read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then
            for ((c = ${part%-*}; c <= ${part#*-}; c++)); do cpus+=("$c"); done
        else
            cpus+=("$part")
        fi
    done
    echo "${cpus[*]}"
}
join_cpus() { local IFS=,; echo "$*"; }

read -r -a CPUS <<<"$(expand_cpus "$(awk '/^Cpus_allowed_list:/{print $2}' /proc/self/status)")"
NCPU=${#CPUS[@]}
WORKERS=${WORKERS:-$((NCPU / 2 > 0 ? NCPU / 2 : 1))}
[[ $WORKERS =~ ^[1-9][0-9]*$ && $WORKERS -le 1024 ]] || die "WORKERS must be a number from 1 to 1024, not \`$WORKERS\`"

LB_CPUS='' LOAD_CPUS='' PINNED=0
if [[ $PIN == 0 ]]; then
    PINNING="none (PIN=0): balancer, wrk and demo nodes share all $NCPU CPUs"
elif ((NCPU < 2)); then
    PINNING="none (only $NCPU CPU): balancer, wrk and demo nodes share it"
elif ((WORKERS >= NCPU)); then
    PINNING="none (WORKERS=$WORKERS leaves no CPU of the $NCPU for wrk and the demo nodes): all share all CPUs"
else
    PINNED=1
    LB_CPUS=$(join_cpus "${CPUS[@]:0:WORKERS}")
    LOAD_CPUS=$(join_cpus "${CPUS[@]:WORKERS}")
    PINNING="balancer on CPU $LB_CPUS; wrk, demo nodes, curl and the samplers on CPU $LOAD_CPUS (taskset)"
fi
if ((PINNED)); then
    LOAD_N=$((NCPU - WORKERS))
else
    LOAD_N=$((NCPU / 2 > 0 ? NCPU / 2 : 1))
fi
THREADS=${THREADS:-$LOAD_N}
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive number, not \`$THREADS\`"
if [[ -n $RATE ]]; then
    # each wrk thread keeps its own schedule (templates/pace.lua)
    PACE_RATE=$(awk -v r="$RATE" -v t="$THREADS" 'BEGIN { printf "%.3f", r / t }')
    export PACE_RATE
fi

# --------------------------------------------------------------------------
# processes, temp dir, cleanup, certificate
# --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/limpet-compare.XXXXXX)
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
# shellcheck source=lib/tls.sh
source "$here/lib/tls.sh"
# shellcheck source=lib/balancers.sh
source "$here/lib/balancers.sh"
# shellcheck source=lib/measure.sh
source "$here/lib/measure.sh"
# shellcheck source=lib/syscalls.sh
source "$here/lib/syscalls.sh"
# shellcheck source=lib/cap.sh
source "$here/lib/cap.sh"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ((TLS)); then make_certificate; fi
syscalls_setup

# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------
log "building limpet and the demo nodes (release) at $V_GIT ($TREE)..."
(cd "$repo" && cargo build --release --quiet --bin limpet --example demo_nodes) ||
    die "cargo build failed"
# What was built must be what the report names.
if [[ $(tree_changes) != "$CHANGES" || $([[ -n $DIFF_SHA ]] && diff_sha) != "$DIFF_SHA" ||
    $(git -C "$repo" rev-parse --short HEAD) != "$V_GIT" ]]; then
    die "the work tree changed during the build; run again"
fi
LIMPET_BIN=$repo/target/release/limpet
NODES_BIN=$repo/target/release/examples/demo_nodes

for i in $(seq "$NODES"); do
    port_free $((PORT_BASE + i)) || die "port $((PORT_BASE + i)) is in use (set PORT_BASE)"
done
port_free "$LB_PORT" || die "port $LB_PORT is in use (set PORT_BASE)"
for p in $((PORT_BASE + 90)) "$HAPROXY_STATS_PORT"; do
    port_free "$p" || die "port $p is in use (set PORT_BASE)"
done

# From here on, this script and everything it starts (demo nodes, wrk,
# curl, the samplers) run on the load CPUs; the balancer is started on its own.
if ((PINNED)); then
    taskset -pc "$LOAD_CPUS" $$ >/dev/null || die "taskset -pc $LOAD_CPUS failed"
fi
# The balancer's command prefix: taskset execs the balancer, so $! is its PID.
ON_LB_CPUS=()
if ((PINNED)); then ON_LB_CPUS=(taskset -c "$LB_CPUS"); fi
cap_setup

# A real Tomcat-style session id, issued by node2 itself (32 hex + ".node2").
start_nodes
JSESSIONID=$(curl -s -D - -o /dev/null "http://$NODE2/" |
    sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' | tr -d '\r' || true)
[[ $JSESSIONID == *.node2 ]] || die "node2 did not issue a JSESSIONID (got \`$JSESSIONID\`)"
stop_nodes

# --------------------------------------------------------------------------
# what the report names: versions, machine, settings (the first JSON line)
# --------------------------------------------------------------------------
V_LIMPET=$("$LIMPET_BIN" --version 2>&1 | head -1)
V_LIMPET_B=
if [[ -n $LIMPET_B ]]; then   # another build: named by its file and its sha256
    V_LIMPET_B="$LIMPET_B ($("$LIMPET_B" --version 2>&1 | head -1), sha256 $(sha256sum "$LIMPET_B" | cut -c1-16))"
fi
V_HAPROXY=$({ haproxy -v 2>&1 || true; } | head -1 | awk '{print $1, $3}')
V_NGINX=$({ nginx -v 2>&1 || true; } | head -1 | sed 's/^nginx version: //')
V_WRK=$({ wrk -v 2>&1 || true; } | head -1 | awk '{print $1, $2}')
V_OPENSSL=
if ((TLS)); then V_OPENSSL=$(openssl version | awk '{print $1, $2}'); fi
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)

STARTED=$(date +%s)
jq -nc --arg commit "$V_GIT" --arg tree "$TREE" --argjson cpus "$NCPU" --arg cpu "$CPU" --arg mem "$MEM" \
    --arg kernel "$(uname -r)" --arg limpet "$V_LIMPET" --arg limpet_b "$V_LIMPET_B" --arg haproxy "$V_HAPROXY" --arg nginx "$V_NGINX" \
    --arg wrk "$V_WRK" --arg openssl "$V_OPENSSL" --argjson workers "$WORKERS" --arg pinning "$PINNING" \
    --argjson threads "$THREADS" --argjson connections "$CONNECTIONS" --arg duration "$DURATION" \
    --arg warmup "$WARMUP" --argjson rounds "$ROUNDS" --arg scenarios "$SCENARIOS" \
    --arg balancers "$BALANCERS" --argjson lb_port "$LB_PORT" --argjson t "$STARTED" \
    --arg sc_tool "$SYSCALLS_TOOL" --arg sc_duration "$SYSCALLS_DURATION" --arg sc_note "$SYSCALLS_NOTE" \
    --arg rate "$RATE" \
    '{kind: "setup", $commit, $tree, $cpus, $cpu, $mem, $kernel,
      versions: {$limpet, limpet_b: (if $limpet_b == "" then null else $limpet_b end), $haproxy, $nginx, $wrk,
        openssl: (if $openssl == "" then null else $openssl end)},
      $workers, $pinning, $threads, $connections, $duration, $warmup, $rounds,
      scenarios: ($scenarios | split(" ") | map(select(. != ""))),
      balancers: ($balancers | split(" ") | map(select(. != ""))), $lb_port,
      syscalls: {tool: (if $sc_tool == "" then null else $sc_tool end), duration: $sc_duration, note: $sc_note},
      pace: (if $rate == "" then null else {rate: ($rate | tonumber)} end),
      scraped: "all", $t}' >"$RESULTS"

# --------------------------------------------------------------------------
# runs: for each scenario, ROUNDS rounds, the balancers' order rotated
# --------------------------------------------------------------------------
run_one() { # run_one NAME SCENARIO ROUND POS: fresh nodes, fresh balancer, one measurement
    local name=$1 scenario=$2 round=$3 pos=$4
    log "$scenario / $name (round $round, position $pos)"
    start_nodes
    if [[ $name == direct* ]]; then
        measure "$name" "$scenario" "$round" "$pos" - "$NODE2"
    else
        start_balancer "$name" "$scenario"
        [[ $scenario == learn_hit ]] && prime_learn "$LB_ADDR"
        measure "$name" "$scenario" "$round" "$pos" "$LB_PID" "$(balancer_target "$scenario")"
        # after the measurement, never during it: counting slows the balancer
        if ((round == ROUNDS)); then
            count_syscalls "$name" "$scenario" "$round" "$LB_PID" "$(balancer_target "$scenario")"
        fi
        stop_pid "$LB_PID"
    fi
    stop_nodes
}

log "demo nodes on 127.0.0.1:$((PORT_BASE + 1))-$((PORT_BASE + NODES)); balancers on $LB_ADDR; $WORKERS worker(s) each"
log "pinning: $PINNING"
log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s) per scenario"
[[ -n $RATE ]] && log "paced: requests sent on a Poisson schedule of $RATE req/s"
log "system calls: $SYSCALLS_NOTE"
log "results, one JSON line per run: $RESULTS"

for scenario in $SCENARIOS; do
    read -r -a who <<<"$(scenario_balancers "$scenario")"
    ((${#who[@]})) || continue
    for ((round = 0; round < ROUNDS; round++)); do
        for ((slot = 0; slot < ${#who[@]}; slot++)); do
            run_one "${who[(round + slot) % ${#who[@]}]}" "$scenario" $((round + 1)) "$((slot + 1))/${#who[@]}"
        done
    done
done
ENDED=$(date +%s)
jq -nc --argjson t "$ENDED" --argjson elapsed $((ENDED - STARTED)) '{kind: "done", $t, $elapsed}' >>"$RESULTS"

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
set +e
"$here/report.sh" "$RESULTS" | tee "$OUT"
status=${PIPESTATUS[0]}
set -e
REPORTED=1
((status <= 1)) || die "report.sh could not make the report of $RESULTS"
log "written: $OUT (from $RESULTS)"

if ((${#PROBLEMS[@]})); then
    printf 'run.sh: %s\n' "${PROBLEMS[@]}" >&"$LOGFD"
    exit 1
fi
exit 0
