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
#   OUT          results file (default benches/compare/results-<date>.md)
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

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
BALANCERS=${BALANCERS:-"limpet haproxy nginx"}
ALL_SCENARIOS="baseline round_robin cookie jvm_route ip_hash learn_hit learn_new tls_keepalive tls_handshake"
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
SCRAPE_URL=    # set while limpet runs: its /metrics, scraped every second
NODE2=127.0.0.1:$((PORT_BASE + 2))

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
OUT=${OUT:-$here/results-$(date +%F).md}
QUIET_IDLE_PCT=${QUIET_IDLE_PCT:-90}   # a measured run starts when the machine is this idle...
WAIT_QUIET=${WAIT_QUIET:-60}           # ...or after waiting this many seconds

exec {LOGFD}>&2   # log() writes here even from inside a redirected block (the EXIT trap may run there)
log() { printf '%s\n' "$*" >&"$LOGFD"; }
die() { log "run.sh: $*"; exit 1; }

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
# processes, temp dir, cleanup
# --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/limpet-compare.XXXXXX)
PIDS=()        # every process this script started (killed on exit)
SAMPLER_PID=

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ ${KEEP_TMP:-0} == 1 || $rc -ne 0 ]]; then
        log "run.sh: configs, logs and raw wrk output kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One certificate for all three balancers (tls_* scenarios): ECDSA P-256,
# self-signed for localhost and 127.0.0.1. limpet reads the chain and the
# (PKCS#8) key, nginx the same two files, HAProxy both in one PEM.
TLS_CRT=$TMP/tls/lb.crt TLS_KEY=$TMP/tls/lb.key TLS_PEM=$TMP/tls/lb.pem
if ((TLS)); then
    mkdir -p "$TMP/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$TLS_KEY" -out "$TLS_CRT" >"$TMP/tls/openssl.log" 2>&1 ||
        die "openssl could not make the certificate: $(cat "$TMP/tls/openssl.log")"
    cat "$TLS_CRT" "$TLS_KEY" >"$TLS_PEM"
    chmod 600 "$TLS_KEY" "$TLS_PEM"   # limpet check warns about a key every user can read
fi

forget_pid() { # remove $1 from PIDS
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() { # TERM, wait up to 5 s, KILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port_free() { # a stopped process's port: free within 5 s
    for _ in $(seq 50); do port_free "$1" && return 0; sleep 0.1; done
    die "port $1 is still in use"
}

wait_http() { # wait_http URL PID NAME: until URL answers (max 10 s)
    local url=$1 pid=$2 name=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (see $TMP)"
        # -k: the tls_* scenarios' certificate is self-signed; HTTP/1.1 as wrk speaks
        curl -sk --http1.1 -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$name did not answer on $url within 10 s (see $TMP)"
}

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

NODES_PID=
start_nodes() { # fresh demo nodes for every run: no sessions left from the last one
    local i
    for i in $(seq "$NODES"); do wait_port_free $((PORT_BASE + i)); done
    "$NODES_BIN" --nodes "$NODES" --port-base "$PORT_BASE" >"$TMP/nodes.log" 2>&1 &
    NODES_PID=$!
    PIDS+=("$NODES_PID")
    for _ in $(seq 100); do
        grep -q '^ready$' "$TMP/nodes.log" 2>/dev/null && return 0
        kill -0 "$NODES_PID" 2>/dev/null || die "demo_nodes exited: $(cat "$TMP/nodes.log")"
        sleep 0.1
    done
    die "demo_nodes did not start"
}
stop_nodes() {
    [[ -n $NODES_PID ]] && stop_pid "$NODES_PID"
    NODES_PID=
}

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
# scenarios
# --------------------------------------------------------------------------
HIT_ID=   # learn_hit: the id the balancer under test learned from node2 (per run)

scenario_mode() { # the affinity a scenario configures: templates/*/*-<mode>.*
    case $1 in
        round_robin | tls_*) echo none ;;
        cookie | jvm_route | ip_hash) echo "$1" ;;
        learn_hit | learn_new) echo learn ;;
        *) die "scenario $1 runs no balancer" ;;
    esac
}
scenario_path() { # the request of the scenario
    case $1 in
        learn_new) echo / ;;          # a session path: every cookie-less request creates a session
        *) echo /static/x ;;          # never creates or reads a session
    esac
}
scenario_header() { # scenario [name] → request header for wrk/curl
    case $1 in
        baseline | round_robin | ip_hash | learn_new | tls_keepalive) echo "" ;;
        tls_handshake) echo "Connection: close" ;;   # a new connection and TLS handshake per request
        cookie) echo "Cookie: SERVERID=node2" ;;
        jvm_route) echo "Cookie: JSESSIONID=$JSESSIONID" ;;
        learn_hit) echo "Cookie: JSESSIONID=$HIT_ID" ;;
    esac
}
scenario_scheme() { # how clients speak to the balancer
    case $1 in
        tls_*) echo https ;;
        *) echo http ;;
    esac
}
balancer_target() { # scenario → host:port clients use for the balancer
    # Over TLS by name, as clients do: wrk sends the URL's host as SNI, and
    # an IP address there is not allowed (RFC 6066; rustls logs a warning
    # for each). localhost resolves to 127.0.0.1; the certificate names it.
    case $1 in
        tls_*) echo "localhost:$LB_PORT" ;;
        *) echo "$LB_ADDR" ;;
    esac
}
scenario_expect() { # which node(s) the requests should reach
    case $1 in
        round_robin | learn_new | tls_*) echo "node1+node2+node3" ;;
        ip_hash) echo "one node, always the same" ;;
        *) echo "node2" ;;
    esac
}
scenario_balancers() { # who runs in a scenario, in the order of round 1
    local b who=()
    case $1 in
        baseline)
            who=(direct)
            # learn_new's request costs the node more (a new session each):
            # its own direct baseline
            [[ " $SCENARIOS " == *" learn_new "* ]] && who+=(direct_new)
            ;;
        learn_hit | learn_new)
            for b in $BALANCERS; do [[ $b == nginx ]] || who+=("$b"); done
            ;;
        *) read -r -a who <<<"$BALANCERS" ;;
    esac
    echo "${who[*]}"
}
NGINX_SKIP="open-source nginx cannot learn a session id from a response (that is nginx Plus \`sticky learn\`)"

# --------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------
# render TEMPLATE [NAME=VALUE]...: templates/TEMPLATE with every {{NAME}}
# replaced by VALUE, the settings below included. A line that is only a
# {{NAME}} whose VALUE is empty is left out; a {{NAME}} without a value is
# an error.
render() {
    local file=$here/templates/$1 kv vars=()
    shift
    [[ -f $file ]] || die "no template $file"
    for kv in SCENARIO="${SCENARIO:-}" WORKERS="$WORKERS" MAXCONN="$MAXCONN" TMP="$TMP" \
        LB_ADDR="$LB_ADDR" ADMIN_ADDR="$ADMIN_ADDR" HAPROXY_STATS_PORT="$HAPROXY_STATS_PORT" \
        NODE1_PORT=$((PORT_BASE + 1)) NODE2_PORT=$((PORT_BASE + 2)) NODE3_PORT=$((PORT_BASE + 3)) \
        TLS_CRT="$TLS_CRT" TLS_KEY="$TLS_KEY" TLS_PEM="$TLS_PEM" "$@"; do
        vars+=("T_$kv")
    done
    # The values travel in the environment (as T_NAME): no quoting to get wrong.
    # shellcheck disable=SC2016  # an awk program
    env "${vars[@]}" awk '
        {
            line = $0; out = ""
            while (match(line, /[{][{][A-Z0-9_]+[}][}]/)) {
                name = substr(line, RSTART + 2, RLENGTH - 4)
                if (!(("T_" name) in ENVIRON)) {
                    printf "%s:%d: no value for {{%s}}\n", FILENAME, FNR, name > "/dev/stderr"
                    exit 2
                }
                out = out substr(line, 1, RSTART - 1) ENVIRON["T_" name]
                line = substr(line, RSTART + RLENGTH)
            }
            out = out line
            if (out == "" && $0 != "") next
            print out
        }' "$file" || die "could not fill in $file"
}

tls_suffix() { # scenario → the file name part of its listener: http or tls
    case $1 in
        tls_*) echo tls ;;
        *) echo http ;;
    esac
}

# The configurations: one template per balancer, with the parts that differ
# between scenarios in files of their own, named by the scenario's mode
# (scenario_mode) and by http or tls. Each part is filled in on its own
# line, so that a template that cannot be filled in stops the script.

limpet_config() { # scenario → lb.yaml
    local SCENARIO=$1 mode tls listener sticky
    mode=$(scenario_mode "$1")
    tls=$(tls_suffix "$1")
    listener=$(render "limpet/listener-$tls.yaml")
    sticky=$(render "limpet/sticky-$mode.yaml")
    render limpet/lb.yaml LISTENER="$listener" STICKY="$sticky"
}

haproxy_config() { # scenario → haproxy.cfg
    local SCENARIO=$1 mode tls global_tls='' frontend backend
    mode=$(scenario_mode "$1")
    tls=$(tls_suffix "$1")
    if [[ $tls == tls ]]; then global_tls=$(render haproxy/global-tls.cfg); fi
    frontend=$(render "haproxy/frontend-$tls.cfg")
    backend=$(render "haproxy/backend-$mode.cfg")
    render haproxy/haproxy.cfg GLOBAL_TLS="$global_tls" FRONTEND="$frontend" BACKEND="$backend"
}

# shellcheck disable=SC2016  # $names below are nginx variables
nginx_config() { # scenario → nginx.conf
    local SCENARIO=$1 mode upstream listen
    mode=$(scenario_mode "$1")
    case $mode in # which of the upstreams in templates/nginx/nginx.conf
        none) upstream=app ;;
        cookie) upstream='$by_serverid' ;;
        jvm_route) upstream='$by_jvm_route' ;;
        ip_hash) upstream=app_ip_hash ;;
        *) die "nginx has no configuration for scenario $1" ;;
    esac
    listen=$(render "nginx/listen-$(tls_suffix "$1").conf")
    render nginx/nginx.conf UPSTREAM="$upstream" LISTEN="$listen" \
        RLIMIT_NOFILE=$((4 * MAXCONN)) WORKER_CONNECTIONS=$((2 * MAXCONN))
}

start_balancer() { # start_balancer NAME SCENARIO → sets LB_PID
    local name=$1 scenario=$2 conf
    SCRAPE_URL=
    wait_port_free "$LB_PORT"
    case $name in
        limpet)
            wait_port_free $((PORT_BASE + 90))
            conf=$TMP/lb-$scenario.yaml
            limpet_config "$scenario" >"$conf"
            mkdir -p "$TMP/limpet-state"
            "$LIMPET_BIN" check --config "$conf" >"$TMP/limpet-check.log" 2>&1 ||
                die "limpet rejected $conf: $(cat "$TMP/limpet-check.log")"
            "${ON_LB_CPUS[@]}" "$LIMPET_BIN" --config "$conf" >"$TMP/limpet-$scenario.log" 2>&1 &
            LB_PID=$!
            SCRAPE_URL="http://$ADMIN_ADDR/metrics"
            ;;
        haproxy)
            wait_port_free "$HAPROXY_STATS_PORT"
            conf=$TMP/haproxy-$scenario.cfg
            haproxy_config "$scenario" >"$conf"
            haproxy -c -q -f "$conf" >"$TMP/haproxy-check.log" 2>&1 ||
                die "haproxy rejected $conf: $(cat "$TMP/haproxy-check.log")"
            # -db: foreground, no master process: one process with nbthread threads
            "${ON_LB_CPUS[@]}" haproxy -db -f "$conf" >"$TMP/haproxy-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
        nginx)
            conf=$TMP/nginx-$scenario.conf
            nginx_config "$scenario" >"$conf"
            mkdir -p "$TMP/nginx-tmp"
            nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-check.log" 2>&1 ||
                die "nginx rejected $conf: $(cat "$TMP/nginx-check.log")"
            # daemon off: the master stays in the foreground, so $! is the master
            "${ON_LB_CPUS[@]}" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
    esac
    PIDS+=("$LB_PID")
    wait_http "$(scenario_scheme "$scenario")://$(balancer_target "$scenario")/static/ready" "$LB_PID" "$name"
    [[ -z $SCRAPE_URL ]] || wait_http "$SCRAPE_URL" "$LB_PID" "$name admin endpoint"
}

learned_sessions() { # learned_sessions NAME: entries in the balancer's learned table now
    local n=
    case $1 in
        limpet)
            n=$(curl -s --max-time 5 "http://$ADMIN_ADDR/metrics" |
                awk '/^limpet_learned_sessions[ {]/ { s += $NF; found = 1 } END { if (found) print s }' || true)
            ;;
        haproxy)
            # "# table: app, type: string, size:1048576, used:123"
            n=$( (exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_STATS_PORT" && echo "show table" >&3 &&
                timeout 5 cat <&3) 2>/dev/null | sed -n 's/^# table: app,.*used:\([0-9]*\).*/\1/p' || true)
            ;;
    esac
    echo "${n:-?}"
}

# tls_probe ADDR: what an OpenSSL 3 client (as wrk) negotiates, and whether
# the balancer resumes a session, in one line.
tls_probe() {
    local addr=$1 out new kx alpn verify r13=no r12 sess=$TMP/tls/session.pem
    out=$(timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -verify_hostname "${addr%:*}" \
        -alpn h2,http/1.1 </dev/null 2>&1 || true)
    new=$(sed -n 's/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' <<<"$out" | head -1)
    if [[ -z $new || $new == *NONE* ]]; then
        echo "no handshake: $(grep -m1 -i -E 'error|errno|alert' <<<"$out" || echo "openssl s_client failed")"
        return 0
    fi
    kx=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -1)
    alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -1)
    verify=$(sed -n 's/^ *Verify return code: //p' <<<"$out" | head -1)
    [[ $verify == "0 (ok)" ]] && verify=verified
    # TLS 1.3: the tickets come after the handshake, so read a whole response
    # before saving the session, then offer it on a new connection.
    rm -f "$sess"
    printf 'GET /static/x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" |
        timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_3 -ign_eof -sess_out "$sess" >/dev/null 2>&1 || true
    if [[ -s $sess ]] && timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_3 -sess_in "$sess" </dev/null 2>&1 |
        grep -q '^Reused, '; then
        r13=yes
    fi
    # TLS 1.2: the session id, 5 reconnections
    r12=$(timeout 20 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_2 -reconnect </dev/null 2>&1 |
        grep -c '^Reused, ' || true)
    echo "$new, $kx, ALPN ${alpn:-none} (offered h2,http/1.1), certificate ${verify:-not checked};" \
        "resumes a session: TLS 1.3 $r13, TLS 1.2 $r12/5"
}

haproxy_handshakes() { # "FULL RESUMED": TLS handshakes HAProxy's frontend counted so far
    ( (exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_STATS_PORT" && echo "show stat typed" >&3 &&
        timeout 5 cat <&3) 2>/dev/null || true) |
        awk -F'[.:]' '$1 == "F" && $5 == "ssl_sess" { f += $NF } $1 == "F" && $5 == "ssl_reused_sess" { r += $NF }
            END { print f + 0, r + 0 }'
}

prime_learn() { # prime_learn TARGET: a session node2 issues through the balancer → HIT_ID
    local hdrs node id
    HIT_ID=
    for _ in $(seq 12); do
        hdrs=$(curl -s -D - -o /dev/null --max-time 5 "http://$1/" | tr -d '\r' || true)
        node=$(awk -F': ' 'tolower($1)=="x-demo-node"{print $2}' <<<"$hdrs")
        id=$(sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' <<<"$hdrs" | head -1)
        if [[ $node == node2 && -n $id ]]; then
            HIT_ID=$id
            return 0
        fi
    done
    die "no session from node2 through $1 in 12 requests"
}

# --------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------
proc_tree() { # PID and its children (nginx master + workers)
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}
rss_kib() { # current RSS of PID + children, KiB
    local total=0 p r
    for p in $(proc_tree "$1"); do
        r=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}
hwm_kib() { # sum of VmHWM (peak RSS) of PID + children, KiB
    local total=0 p r
    for p in $(proc_tree "$1"); do
        r=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}
start_sampler() { # start_sampler PID FILE: max of RSS samples every 0.5 s into FILE
    local pid=$1 file=$2
    echo 0 >"$file"
    (
        trap 'exit 0' TERM
        max=0
        tick=0
        while kill -0 "$pid" 2>/dev/null; do
            cur=$(rss_kib "$pid")
            if ((cur > max)); then max=$cur; echo "$max" >"$file"; fi
            # Like Prometheus, only more often: the cost of metrics is in the run.
            if [[ -n $SCRAPE_URL ]] && ((tick % 2 == 0)); then
                curl -s -o /dev/null --max-time 1 "$SCRAPE_URL" || true
            fi
            tick=$((tick + 1))
            sleep 0.5
        done
    ) &
    SAMPLER_PID=$!
}
stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# wrk latency "123.45us" / "1.23ms" / "1.02s" → milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.0f", v * 1000 }
        else printf "?"
    }'
}
run_wrk() { # run_wrk URL DURATION OUTFILE HEADER [wrk args...]; wrk's own CPU seconds → OUTFILE.cpu
    local url=$1 dur=$2 out=$3 header=$4
    shift 4
    local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency --timeout 5s)
    [[ -n $header ]] && args+=(-H "$header")
    local TIMEFORMAT='%3U %3S' rc=0
    { time wrk "${args[@]}" "$@" "$url" >"$out" 2>&1 || rc=$?; } 2>"$out.cpu"
    if ((rc != 0)); then
        log "wrk failed: $(cat "$out")"
        return 1
    fi
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of PID and its children (all threads), in clock ticks
    local total=0 p t
    for p in $(proc_tree "$1"); do
        # fields after the ")" of the command name: utime is the 12th, stime the 13th
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
system_busy_ticks() { # busy ticks of all CPUs since boot (everything but idle and iowait)
    awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}
system_idle_pct() { # share of the machine idle over 1 s
    local a b ta tb
    read -r a ta < <(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 1
    read -r b tb < <(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    awk -v i=$((b - a)) -v t=$((tb - ta)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * i / t : 100) }'
}
wait_quiet() { # other work on the machine (compiles...) distorts the numbers: wait for it
    local waited=0 idle
    while :; do
        idle=$(system_idle_pct)
        ((idle >= QUIET_IDLE_PCT)) && return 0
        if ((waited >= WAIT_QUIET)); then
            log "  warning: the machine is busy (only ${idle}% idle) after waiting ${WAIT_QUIET}s; measuring anyway (see the 'other CPU' column)"
            return 0
        fi
        ((waited == 0)) && log "  waiting for the machine to be quiet (${idle}% idle, need ${QUIET_IDLE_PCT}%)..."
        waited=$((waited + 1))
    done
}

# routing_ok SCENARIO NODE... : did the requests go where the scenario says?
routing_ok() {
    local scenario=$1
    shift
    local distinct
    distinct=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
    distinct=${distinct% }
    case $scenario in
        round_robin | learn_new | tls_*) [[ $distinct == "node1 node2 node3" ]] ;;
        ip_hash) [[ $distinct =~ ^node[0-9]+$ ]] ;;
        *) [[ $distinct == node2 ]] ;;
    esac
}

# Per-run results, keyed "scenario|balancer|round".
declare -A R_RPS R_P50 R_P99 R_US R_PCT R_OTHER R_IDLE R_PEAK R_HWM R_NON2XX R_SOCK R_REQS R_DIST R_POS R_SANITY R_TLS
PROBLEMS=()   # one line per run that saw errors or misrouted requests

# measure NAME SCENARIO ROUND POS PID TARGET
measure() {
    local name=$1 scenario=$2 round=$3 pos=$4 pid=$5 target=$6
    local key="$scenario|$name|$round" tag="$scenario-$name-r$round"
    local header path url
    header=$(scenario_header "$scenario")
    path=$(scenario_path "$scenario")
    [[ $name == direct_new ]] && path=/
    url=$(scenario_scheme "$scenario")://$target$path

    # sanity: 6 single requests with curl, which node answered each
    # (-k: self-signed; HTTP/1.1, as wrk speaks)
    local seen=() n
    for _ in $(seq 6); do
        local curl_args=(-sk --http1.1 -o /dev/null -D - --max-time 5)
        [[ -n $header ]] && curl_args+=(-H "$header")
        n=$(curl "${curl_args[@]}" "$url" | tr -d '\r' |
            awk -F': ' 'tolower($1)=="x-demo-node"{print $2}' || true)
        seen+=("${n:-none}")
    done
    local expect
    expect=$(scenario_expect "$scenario")
    [[ $name == direct* ]] && expect=node2
    R_SANITY[$key]="$scenario / $name (round $round): GET $path${header:+ with $header} → curl x6: ${seen[*]} (expected: $expect)"
    if [[ $scenario == tls_* ]]; then
        local tls
        tls=$(tls_probe "$target")
        R_TLS[$key]=$tls
        R_SANITY[$key]+="; TLS: $tls"
        [[ $tls == "no handshake"* ]] && PROBLEMS+=("$scenario / $name, round $round: openssl s_client: $tls")
    fi
    log "  sanity: ${R_SANITY[$key]}"

    local idle=0
    [[ $pid != - ]] && idle=$(rss_kib "$pid")
    [[ $pid != - ]] && start_sampler "$pid" "$TMP/rss-$tag"

    # warm-up (counts where responses went), then the measured run
    run_wrk "$url" "$WARMUP" "$TMP/warmup-$tag.txt" "$header" -s "$here/templates/count_nodes.lua" ||
        die "wrk failed ($scenario / $name)"
    local dist
    dist=$(sed -n 's/^NODES //p' "$TMP/warmup-$tag.txt")

    wait_quiet
    # HAProxy counts full and resumed handshakes: whether wrk resumed (tls_*)
    local hs0=
    [[ $scenario == tls_* && $name == haproxy ]] && hs0=$(haproxy_handshakes)
    local lb0=0 nodes0 sys0 lb1=0 nodes1 sys1
    [[ $pid != - ]] && lb0=$(cpu_ticks "$pid")
    nodes0=$(cpu_ticks "$NODES_PID")
    sys0=$(system_busy_ticks)
    run_wrk "$url" "$DURATION" "$TMP/wrk-$tag.txt" "$header" || die "wrk failed ($scenario / $name)"
    sys1=$(system_busy_ticks)
    nodes1=$(cpu_ticks "$NODES_PID")
    [[ $pid != - ]] && lb1=$(cpu_ticks "$pid")
    if [[ -n $hs0 ]]; then
        local f0 r0 f1 r1
        read -r f0 r0 <<<"$hs0"
        read -r f1 r1 <<<"$(haproxy_handshakes)"
        R_SANITY[$key]+="; HAProxy's TLS handshakes in the measured run: $((f1 - f0)) full, $((r1 - r0)) resumed"
        log "  HAProxy's TLS handshakes in the measured run: $((f1 - f0)) full, $((r1 - r0)) resumed"
    fi

    if [[ $scenario == learn_* ]]; then
        local learned
        learned=$(learned_sessions "$name")
        R_SANITY[$key]+="; learned table after the run: $learned entries"
    fi

    local peak=0 hwm=0
    if [[ $pid != - ]]; then
        stop_sampler
        peak=$(cat "$TMP/rss-$tag")
        local now
        now=$(rss_kib "$pid")
        ((now > peak)) && peak=$now
        hwm=$(hwm_kib "$pid")
    fi

    local f=$TMP/wrk-$tag.txt
    local rps p50 p99 non2xx sockerr reqs secs
    rps=$(awk '/^Requests\/sec:/{printf "%.0f", $2}' "$f")
    reqs=$(awk '/requests in/{print $1}' "$f")
    secs=$(awk '/requests in/{sub(/s,$/, "", $4); print $4}' "$f")
    p50=$(to_ms "$(awk '$1=="50%"{print $2}' "$f")")
    p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$f")")
    non2xx=$(awk -F': ' '/Non-2xx or 3xx responses/{print $2}' "$f")
    non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors/{gsub(/,/,""); print $4+$6+$8+$10}' "$f")
    sockerr=${sockerr:-0}

    # CPU: the balancer's own (µs per request, % of one core), and what the
    # rest of the machine (not wrk, not the nodes, not the balancer) used
    local wrk_cpu lb_us lb_pct other_pct
    wrk_cpu=$(awk '{print $1 + $2}' "$f.cpu")
    lb_us=$(awk -v t=$((lb1 - lb0)) -v hz="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.1f", (r > 0 ? t / hz * 1e6 / r : 0) }')
    lb_pct=$(awk -v t=$((lb1 - lb0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * t / hz / s }')
    other_pct=$(awk -v sys=$((sys1 - sys0)) -v lb=$((lb1 - lb0)) -v nodes=$((nodes1 - nodes0)) \
        -v w="$wrk_cpu" -v hz="$CLK_TCK" -v s="$secs" -v n="$NCPU" \
        'BEGIN { o = (sys - lb - nodes) / hz - w; if (o < 0) o = 0; printf "%.0f", 100 * o / (s * n) }')
    [[ $pid == - ]] && { lb_us=-; lb_pct=-; }

    local mem_idle=- mem_peak=- mem_hwm=-
    if [[ $pid != - ]]; then
        mem_idle=$(mib "$idle")
        mem_peak=$(mib "$peak")
        mem_hwm=$(mib "$hwm")
    fi
    R_RPS[$key]=$rps R_P50[$key]=$p50 R_P99[$key]=$p99 R_US[$key]=$lb_us R_PCT[$key]=$lb_pct
    R_OTHER[$key]=$other_pct R_IDLE[$key]=$mem_idle R_PEAK[$key]=$mem_peak R_HWM[$key]=$mem_hwm
    R_NON2XX[$key]=$non2xx R_SOCK[$key]=$sockerr R_REQS[$key]=$reqs R_DIST[$key]=${dist:-?} R_POS[$key]=$pos

    # where did the requests go (curl and warm-up), and did anything fail?
    local warm_nodes=()
    local w
    for w in ${dist:-none}; do warm_nodes+=("${w%%=*}"); done
    local mode=$scenario
    [[ $name == direct* ]] && mode=baseline
    if ! routing_ok "$mode" "${seen[@]}" "${warm_nodes[@]}"; then
        PROBLEMS+=("$scenario / $name, round $round: requests went to ${seen[*]} (curl) and ${dist:-?} (warm-up); expected $expect")
    fi
    if [[ $non2xx != 0 || $sockerr != 0 ]]; then
        PROBLEMS+=("$scenario / $name, round $round: $non2xx non-2xx responses, $sockerr socket errors")
    fi
    if [[ ${reqs:-0} == 0 ]]; then
        PROBLEMS+=("$scenario / $name, round $round: not a single response in the measured run")
    fi
    log "  $scenario / $name (round $round): ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${non2xx}, socket errors ${sockerr}," \
        "balancer CPU ${lb_us} µs/req (${lb_pct}% of a core), other load ${other_pct}%, RSS ${mem_idle} → ${mem_peak} MiB; warm-up: ${dist}"
}

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

# --------------------------------------------------------------------------
# runs: for each scenario, ROUNDS rounds, the balancers' order rotated
# --------------------------------------------------------------------------
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
