#!/usr/bin/env bash
# Side-by-side benchmark: limpet vs HAProxy vs nginx in front of the same
# three demo backends, measured with wrk. See benches/compare/README.md.
#
#   sudo benches/compare/run.sh                        # the reference run (~19 min on 2 CPUs + build)
#   sudo ALLOW_DIRTY=1 ROUNDS=1 DURATION=5s benches/compare/run.sh   # a quick look
#
# It measures the committed tree: with uncommitted changes it refuses to run
# unless ALLOW_DIRTY=1 (the report then names the diff's sha256).
#
# This driver fills in the configurations from templates/ and measures every
# (scenario, balancer, round) with lib/measure.sh.
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
#   BALANCERS    which balancers (default "limpet haproxy nginx")
#   SCENARIOS    which scenarios (default all: "baseline round_robin cookie
#                jvm_route ip_hash learn_hit learn_new tls_keepalive tls_handshake")
#   PORT_BASE    demo nodes listen on PORT_BASE+1..+3 (default 19000); the
#                balancer on PORT_BASE+80 (HTTPS in the tls_* scenarios),
#                limpet's admin on PORT_BASE+90
#   OUT          the Markdown report (default benches/compare/results-<date>.md)
#   ALLOW_DIRTY=1  run on a tree with uncommitted changes
#   KEEP_TMP=1   keep the temporary directory (configs, logs, raw wrk output)
#   QUIET_IDLE_PCT, WAIT_QUIET   before each measured run, wait up to WAIT_QUIET
#                seconds (default 60) for the machine to be QUIET_IDLE_PCT % idle
#                (default 90): a compile running next to the benchmark skews it
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
NODES=3        # the templates name node1..node3
MAXCONN=4096   # client connections at once, all three balancers (wrk uses $CONNECTIONS)
LB_PORT=$((PORT_BASE + 80))
LB_ADDR=127.0.0.1:${LB_PORT}
ADMIN_ADDR=127.0.0.1:$((PORT_BASE + 90))
HAPROXY_STATS_PORT=$((PORT_BASE + 91))   # HAProxy's runtime API (its counterpart of limpet's admin)
NODE2=127.0.0.1:$((PORT_BASE + 2))
OUT=${OUT:-$here/results-$(date +%F).md}
QUIET_IDLE_PCT=${QUIET_IDLE_PCT:-90}   # a measured run starts when the machine is this idle...
WAIT_QUIET=${WAIT_QUIET:-60}           # ...or after waiting this many seconds

for d in "$DURATION" "$WARMUP"; do
    [[ $d =~ ^[0-9]+[smh]?$ ]] || die "durations look like 10s, 30s or 1m, not \`$d\`"
done
for v in ROUNDS CONNECTIONS PORT_BASE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not \`${!v}\`"
done
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario \`$s\` (known: $ALL_SCENARIOS)"
done
for b in $BALANCERS; do
    [[ $b == limpet || $b == haproxy || $b == nginx ]] || die "unknown balancer \`$b\` (known: limpet haproxy nginx)"
done
[[ $PIN == auto || $PIN == 0 ]] || die "PIN is \`auto\` or \`0\`, not \`$PIN\`"

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
tools=(haproxy nginx wrk curl taskset)
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ((TLS)); then make_certificate; fi

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

# A real Tomcat-style session id, issued by node2 itself (32 hex + ".node2").
start_nodes
JSESSIONID=$(curl -s -D - -o /dev/null "http://$NODE2/" |
    sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' | tr -d '\r' || true)
[[ $JSESSIONID == *.node2 ]] || die "node2 did not issue a JSESSIONID (got \`$JSESSIONID\`)"
stop_nodes

# --------------------------------------------------------------------------
# versions, machine
# --------------------------------------------------------------------------
V_LIMPET=$("$LIMPET_BIN" --version 2>&1 | head -1)
V_HAPROXY=$({ haproxy -v 2>&1 || true; } | head -1 | awk '{print $1, $3}')
V_NGINX=$({ nginx -v 2>&1 || true; } | head -1 | sed 's/^nginx version: //')
V_WRK=$({ wrk -v 2>&1 || true; } | head -1 | awk '{print $1, $2}')
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)

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
        stop_pid "$LB_PID"
    fi
    stop_nodes
}

log "demo nodes on 127.0.0.1:$((PORT_BASE + 1))-$((PORT_BASE + NODES)); balancers on $LB_ADDR; $WORKERS worker(s) each"
log "pinning: $PINNING"
log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s) per scenario"

STARTED=$(date +%s)
for scenario in $SCENARIOS; do
    read -r -a who <<<"$(scenario_balancers "$scenario")"
    ((${#who[@]})) || continue
    for ((round = 0; round < ROUNDS; round++)); do
        for ((slot = 0; slot < ${#who[@]}; slot++)); do
            run_one "${who[(round + slot) % ${#who[@]}]}" "$scenario" $((round + 1)) "$((slot + 1))/${#who[@]}"
        done
    done
done
ELAPSED=$(($(date +%s) - STARTED))

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
median() { # median of the numeric arguments ("-" when none)
    printf '%s\n' "$@" | awk '/^[0-9]+([.][0-9]+)?$/' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
column() { # column ARRAY SCENARIO NAME → the values of every round
    local -n arr=$1
    local r
    for ((r = 1; r <= ROUNDS; r++)); do echo "${arr[$2|$3|$r]:--}"; done
}
# shellcheck disable=SC2046  # one word per round
med() { median $(column "$@"); }
total() { column "$@" | awk '$1 ~ /^[0-9]+$/ { s += $1 } END { print s + 0 }'; }
fmt() { # fmt FORMAT VALUE ("-" stays)
    [[ $2 == - ]] && { echo -; return; }
    awk -v f="$1" -v v="$2" 'BEGIN { printf f, v }'
}
fmt_ms() {
    [[ $1 == - ]] && { echo -; return; }
    awk -v v="$1" 'BEGIN { if (v < 1) printf "%.3f", v; else if (v < 100) printf "%.2f", v; else printf "%.0f", v }'
}
ratio() { # a / b with 2 decimals, "-" when either is missing
    [[ $1 == - || $2 == - || -z $1 || -z $2 ]] && { echo -; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

tls_report() { # what each balancer negotiated, from round 1 of the tls_* scenarios
    local name scenario t kinds params=()
    cat <<EOF

TLS: one certificate for all three (ECDSA P-256, self-signed for localhost and
127.0.0.1; wrk connects to \`https://localhost:$LB_PORT\`); TLS 1.2 and 1.3 and ALPN
h2 + http/1.1 offered by all three, each with its default cipher suites. Resumption
by session tickets and a session cache in all three, since wrk resumes whenever it may
and limpet always lets it: HAProxy's defaults (tickets, \`tune.ssl.cachesize 20000\`),
nginx \`ssl_session_tickets on\` + \`ssl_session_cache shared:tls:10m\`.
What \`openssl s_client\` ($(openssl version | awk '{print $1, $2}'),
the library wrk uses, with its defaults) negotiates with each balancer, and whether
the balancer resumes a session (round 1; every run's probe is in its sanity line):

| balancer | negotiated, resumption |
|---|---|
EOF
    for name in $BALANCERS; do
        t=
        for scenario in $SCENARIOS; do
            [[ $scenario == tls_* ]] || continue
            t=${R_TLS[$scenario|$name|1]:-}
            [[ -n $t ]] && break
        done
        echo "| $name | ${t:-?} |"
        # protocol, suite, group and resumption must match; ALPN is not used by wrk
        [[ -n $t ]] && params+=("${t%%, ALPN*} ${t#*resumes a session: }")
    done
    kinds=$(printf '%s\n' "${params[@]}" | sort -u | wc -l)
    if ((kinds > 1)); then
        echo
        echo "**Not alike**: the balancers negotiated different parameters (above); their TLS numbers are not comparable one to one."
    fi
}

report() {
    local rounds_word=rounds
    ((ROUNDS == 1)) && rounds_word=round
    cat <<EOF
# limpet vs HAProxy vs nginx — $(date '+%F %R %Z')

* Commit: **$V_GIT**, $TREE
* Machine: $NCPU CPUs ($CPU), $MEM RAM, Linux $(uname -r)
* Versions: $V_LIMPET, $V_HAPROXY, $V_NGINX, $V_WRK
* Workers: $WORKERS for every balancer (limpet \`workers: $WORKERS\`, HAProxy \`nbthread $WORKERS\`,
  nginx \`worker_processes $WORKERS\`); keep-alive to the backends, access logs off;
  limpet with its admin endpoint on and \`/metrics\` scraped every second.
* Pinning: $PINNING.
* Load: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency --timeout 5s\` after a $WARMUP warm-up;
  3 demo nodes (one \`demo_nodes\` process). Fresh demo nodes and a freshly started
  balancer for every run; $ROUNDS $rounds_word per scenario, the balancers' order rotated
  each round; the table shows the **median over rounds** (errors: the sum).
* Took $((ELAPSED / 60)) min $((ELAPSED % 60)) s.

| scenario | balancer | req/s | req/s ÷ HAProxy | req/s ÷ baseline | p50 ms | p99 ms | CPU µs/req | CPU/req ÷ HAProxy | peak RSS MiB | non-2xx | socket errors |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    local scenario name base_rps hap_rps hap_us rps us who_list
    local base_static=- base_new=-
    base_static=$(med R_RPS baseline direct)
    base_new=$(med R_RPS baseline direct_new)
    for scenario in $SCENARIOS; do
        base_rps=$base_static
        [[ $scenario == learn_new ]] && base_rps=$base_new
        hap_rps=$(med R_RPS "$scenario" haproxy)
        hap_us=$(med R_US "$scenario" haproxy)
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for name in "${who_list[@]}"; do
            local b=$base_rps
            [[ $name == direct_new ]] && b=$base_new
            rps=$(med R_RPS "$scenario" "$name")
            us=$(med R_US "$scenario" "$name")
            echo "| $scenario | $name | $(fmt %.0f "$rps") | $(ratio "$rps" "$hap_rps") | $(ratio "$rps" "$b") |" \
                "$(fmt_ms "$(med R_P50 "$scenario" "$name")") | $(fmt_ms "$(med R_P99 "$scenario" "$name")") |" \
                "$(fmt %.1f "$us") | $(ratio "$us" "$hap_us") | $(fmt %.1f "$(med R_PEAK "$scenario" "$name")") |" \
                "$(total R_NON2XX "$scenario" "$name") | $(total R_SOCK "$scenario" "$name") |"
        done
        if [[ ($scenario == learn_hit || $scenario == learn_new) && " $BALANCERS " == *" nginx "* ]]; then
            echo "| $scenario | nginx | not run | | | | | | | | | |"
        fi
    done
    cat <<EOF

* \`baseline\`: wrk straight to node2, no balancer: \`direct\` with \`GET /static/x\`
  (the reference of every scenario but \`learn_new\`), \`direct_new\` with \`GET /\`
  and no cookie (a new session per request: the reference of \`learn_new\`).
* \`round_robin\`: \`GET /static/x\`, no cookie, no affinity.
* \`cookie\`: \`Cookie: SERVERID=node2\` (limpet \`sticky: { mode: cookie }\`; HAProxy
  \`cookie SERVERID insert indirect nocache\`; nginx \`map \$cookie_SERVERID\` → node2's upstream).
* \`jvm_route\`: \`Cookie: JSESSIONID=<32 hex>.node2\` (limpet \`sticky: { mode: jvm_route }\`;
  HAProxy \`use-server nodeN if { req.cook(JSESSIONID) -m end .nodeN }\`; nginx regex map).
* \`ip_hash\`: no cookie, all from 127.0.0.1 (limpet \`sticky: { mode: ip_hash }\`; HAProxy
  \`balance source\` + \`hash-type consistent\`; nginx \`ip_hash\`).
* \`learn_hit\`: \`Cookie: JSESSIONID=<id>\` of a session node2 issued through the balancer
  just before (limpet \`sticky: { mode: learn }\`, \`persist: false\`; HAProxy
  \`stick-table type string len 64 size 1m expire 5h\`, \`stick on req.cook(JSESSIONID)\`,
  \`stick store-response res.cook(JSESSIONID)\`).
* \`learn_new\`: \`GET /\` without a cookie: every response sets a new JSESSIONID that the
  balancer learns (same configurations; limpet \`capacity: 1000000\`).
* nginx does not run \`learn_hit\` and \`learn_new\`: $NGINX_SKIP.
* \`tls_keepalive\`: \`GET /static/x\` over HTTPS with keep-alive, round robin, no affinity
  (limpet \`tls: { cert, key }\`; HAProxy \`bind … ssl crt … alpn h2,http/1.1\`; nginx
  \`listen … ssl http2\`): the cost of TLS records on top of \`round_robin\`.
* \`tls_handshake\`: the same with \`Connection: close\`: a new TCP connection and TLS
  handshake per request, so req/s = handshakes/s and CPU µs/req = per handshake. wrk
  resumes the session of each connection's previous connection and all three let it:
  these are **resumed** handshakes (TLS 1.3 PSK + ECDHE, no certificate), alike in all three.
  The \`baseline\` of both is plain HTTP (the demo nodes speak no TLS).
EOF
    if ((TLS)); then
        tls_report
    fi
    cat <<EOF

Columns: *req/s*, *p50*, *p99* from wrk; *÷ HAProxy* the ratio to HAProxy in the same
scenario (CPU: above 1 means more CPU per request than HAProxy); *÷ baseline* the share
of the direct baseline's req/s that gets through the balancer; *CPU µs/req* the
balancer's user + system time (\`/proc/PID/stat\`, nginx master + workers) over the
measured run divided by its requests; *peak RSS* the largest resident-memory sample
(every 0.5 s during warm-up and run, nginx summed over its processes); *non-2xx* and
*socket errors* summed over the rounds. See README.md.
EOF
    if ((${#PROBLEMS[@]})); then
        echo
        echo "**Problems:**"
        echo
        printf -- '* %s\n' "${PROBLEMS[@]}"
    fi
    cat <<EOF

Sanity (\`x-demo-node\` of 6 curl requests through each balancer in round 1, before the
warm-up; \`learn_*\`: the size of the learned table after the measured run). Every
run's warm-up counts are in the per-round table, and every run is checked:

\`\`\`
EOF
    for scenario in $SCENARIOS; do
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for name in "${who_list[@]}"; do
            echo "${R_SANITY[$scenario|$name|1]:-}"
        done
    done
    cat <<EOF
\`\`\`

<details><summary>Every run ($ROUNDS $rounds_word per scenario; <i>order</i> is the run's place in its round)</summary>

| scenario | round | order | balancer | req/s | p50 ms | p99 ms | CPU µs/req | balancer CPU % of a core | other CPU % | RSS idle MiB | RSS peak MiB | VmHWM MiB | non-2xx | socket errors | requests | warm-up responses per node |
|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
    local r k
    for scenario in $SCENARIOS; do
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for ((r = 1; r <= ROUNDS; r++)); do
            for name in "${who_list[@]}"; do
                k="$scenario|$name|$r"
                [[ -n ${R_RPS[$k]:-} ]] || continue
                echo "| $scenario | $r | ${R_POS[$k]} | $name | ${R_RPS[$k]} | ${R_P50[$k]} | ${R_P99[$k]} | ${R_US[$k]} |" \
                    "${R_PCT[$k]} | ${R_OTHER[$k]} | ${R_IDLE[$k]} | ${R_PEAK[$k]} | ${R_HWM[$k]} | ${R_NON2XX[$k]} |" \
                    "${R_SOCK[$k]} | ${R_REQS[$k]} | ${R_DIST[$k]} |"
            done
        done
    done
    cat <<EOF

*other CPU %*: the share of the whole machine used during the run by anything
but wrk, the demo nodes and the balancer (other jobs); above a few percent,
distrust that run. *RSS idle*: after start-up and the curl checks; *VmHWM*: the
kernel's high-water mark at the end of the run.

Sanity lines of every run:

\`\`\`
EOF
    for scenario in $SCENARIOS; do
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for ((r = 1; r <= ROUNDS; r++)); do
            for name in "${who_list[@]}"; do
                [[ -n ${R_SANITY[$scenario|$name|$r]:-} ]] && echo "${R_SANITY[$scenario|$name|$r]}"
            done
        done
    done
    cat <<EOF
\`\`\`

</details>
EOF
}

report | tee "$OUT"
log "written: $OUT"

if ((${#PROBLEMS[@]})); then
    printf 'run.sh: %s\n' "${PROBLEMS[@]}" >&"$LOGFD"
    exit 1
fi
exit 0
