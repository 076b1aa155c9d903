#!/usr/bin/env bash
# Side-by-side benchmark: limpet vs HAProxy vs nginx in front of the same
# three demo backends, measured with wrk. See benches/compare/README.md.
#
#   sudo benches/compare/run.sh                 # 10 s per run
#   sudo DURATION=30s benches/compare/run.sh    # steadier numbers
#
# Environment:
#   DURATION     wrk -d of each measured run (default 10s); a 2 s warm-up precedes it
#   WARMUP       warm-up duration (default 2s)
#   THREADS      wrk -t (default 2)      CONNECTIONS  wrk -c (default 64)
#   BALANCERS    which balancers to run (default "limpet haproxy nginx")
#   SCENARIOS    which scenarios to run (default "round_robin cookie jvm_route")
#   PORT_BASE    demo nodes listen on PORT_BASE+1..+3 (default 19000);
#                the balancer listens on PORT_BASE+80 (default 19080)
#   OUT          results file (default benches/compare/results-<date>.md)
#   KEEP_TMP=1   keep the temporary directory (configs, logs, raw wrk output)
#   QUIET_IDLE_PCT, WAIT_QUIET   before each measured run, wait up to WAIT_QUIET
#                seconds (default 60) for the machine to be QUIET_IDLE_PCT % idle
#                (default 90): a compile running next to the benchmark skews it
#
# Only loopback addresses are used; every load run is bounded by wrk -d.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
BALANCERS=${BALANCERS:-"limpet haproxy nginx"}
SCENARIOS=${SCENARIOS:-"round_robin cookie jvm_route"}
PORT_BASE=${PORT_BASE:-19000}
NODES=3
WORKERS=2
MAXCONN=4096   # client connections at once, all three balancers (wrk uses $CONNECTIONS)
LB_PORT=$((PORT_BASE + 80))
LB_ADDR=127.0.0.1:${LB_PORT}
ADMIN_ADDR=127.0.0.1:$((PORT_BASE + 90))
SCRAPE_URL=    # set while limpet runs: its /metrics, scraped every second
PATH_UNDER_TEST=/static/x

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

# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------
missing=()
for tool in haproxy nginx wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq "${missing[@]}" >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
        # Debian's packages may start their system services; this benchmark
        # starts its own instances, so nothing else needs to run.
    else
        die "missing tools: ${missing[*]} (run as root to install them with apt-get, or: apt-get install -y ${missing[*]})"
    fi
fi
command -v cargo >/dev/null 2>&1 || die "cargo is needed to build limpet"

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

wait_http() { # wait_http URL PID NAME: until URL answers (max 10 s)
    local url=$1 pid=$2 name=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (see $TMP)"
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$name did not answer on $url within 10 s (see $TMP)"
}

# --------------------------------------------------------------------------
# build, backends
# --------------------------------------------------------------------------
log "building limpet and the demo nodes (release)..."
(cd "$repo" && cargo build --release --quiet --bin limpet --example demo_nodes) ||
    die "cargo build failed"
LIMPET_BIN=$repo/target/release/limpet
NODES_BIN=$repo/target/release/examples/demo_nodes

for i in $(seq "$NODES"); do
    port_free $((PORT_BASE + i)) || die "port $((PORT_BASE + i)) is in use (set PORT_BASE)"
done
port_free "$LB_PORT" || die "port $LB_PORT is in use (set PORT_BASE)"

"$NODES_BIN" --nodes "$NODES" --port-base "$PORT_BASE" >"$TMP/nodes.log" 2>&1 &
NODES_PID=$!
PIDS+=("$NODES_PID")
for _ in $(seq 100); do
    grep -q '^ready$' "$TMP/nodes.log" 2>/dev/null && break
    kill -0 "$NODES_PID" 2>/dev/null || die "demo_nodes exited: $(cat "$TMP/nodes.log")"
    sleep 0.1
done
grep -q '^ready$' "$TMP/nodes.log" || die "demo_nodes did not start"
NODE2=127.0.0.1:$((PORT_BASE + 2))

# A real Tomcat-style session id, issued by node2 itself (32 hex + ".node2").
JSESSIONID=$(curl -s -D - -o /dev/null "http://$NODE2/" |
    sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' | tr -d '\r')
[[ $JSESSIONID == *.node2 ]] || die "node2 did not issue a JSESSIONID (got \`$JSESSIONID\`)"

# --------------------------------------------------------------------------
# versions, machine
# --------------------------------------------------------------------------
V_LIMPET=$("$LIMPET_BIN" --version 2>&1 | head -1)
V_HAPROXY=$({ haproxy -v 2>&1 || true; } | head -1 | awk '{print $1, $3}')
V_NGINX=$({ nginx -v 2>&1 || true; } | head -1 | sed 's/^nginx version: //')
V_WRK=$({ wrk -v 2>&1 || true; } | head -1 | awk '{print $1, $2}')
V_GIT=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$repo" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    V_GIT="$V_GIT (+ uncommitted changes)"
fi
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)

# --------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------
# Scenario → request headers for wrk/curl.
scenario_header() {
    case $1 in
        baseline | round_robin) echo "" ;;
        cookie) echo "Cookie: SERVERID=node2" ;;
        jvm_route) echo "Cookie: JSESSIONID=$JSESSIONID" ;;
    esac
}
scenario_expect() { # which node(s) the requests should reach
    case $1 in
        round_robin) echo "node1+node2+node3" ;;
        *) echo "node2" ;;
    esac
}

limpet_config() { # scenario → lb.yaml
    local sticky
    case $1 in
        round_robin) sticky="{ mode: none }" ;;
        cookie) sticky="{ mode: cookie }" ;; # SERVERID, indirect, nocache (defaults)
        jvm_route) sticky="{ mode: jvm_route }" ;;
    esac
    cat <<EOF
# generated by benches/compare/run.sh (scenario $1)
listeners:
  - { name: bench, bind: "$LB_ADDR", pool: app }
workers: $WORKERS
state_dir: $TMP/limpet-state
# Metrics on, scraped every second during the runs (see start_sampler).
admin: { bind: "$ADMIN_ADDR" }
log: { access: false, level: warn }
timeouts: { connect: 3s, request_header: 10s, backend_response: 60s, client_idle: 60s, shutdown_grace: 2s }
limits: { max_connections: $MAXCONN }
pools:
  app:
    balance: round_robin
    sticky: $sticky
    servers:
EOF
    for i in $(seq "$NODES"); do
        echo "      - { name: node$i, address: 127.0.0.1:$((PORT_BASE + i)) }"
    done
}

haproxy_config() { # scenario → haproxy.cfg
    cat <<EOF
# generated by benches/compare/run.sh (scenario $1)
global
    nbthread $WORKERS
    maxconn $MAXCONN
    pidfile $TMP/haproxy.pid
    # no "log" line: no logging at all (= access logs off)

defaults
    mode http
    option http-keep-alive
    http-reuse always
    option forwardfor
    retries 2
    option redispatch
    timeout connect 3s
    timeout http-request 10s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind $LB_ADDR
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend app

backend app
    balance roundrobin
EOF
    case $1 in
        cookie) echo "    cookie SERVERID insert indirect nocache" ;;
        jvm_route)
            for i in $(seq "$NODES"); do
                echo "    use-server node$i if { req.cook(JSESSIONID) -m end .node$i }"
            done
            ;;
    esac
    for i in $(seq "$NODES"); do
        if [[ $1 == cookie ]]; then
            echo "    server node$i 127.0.0.1:$((PORT_BASE + i)) cookie node$i"
        else
            echo "    server node$i 127.0.0.1:$((PORT_BASE + i))"
        fi
    done
}

# shellcheck disable=SC2016  # $names below are nginx variables
nginx_config() { # scenario → nginx.conf
    local i upstream_target
    case $1 in
        round_robin) upstream_target=app ;;
        cookie) upstream_target='$by_serverid' ;;
        jvm_route) upstream_target='$by_jvm_route' ;;
    esac
    cat <<EOF
# generated by benches/compare/run.sh (scenario $1)
daemon off;
master_process on;
user root;
worker_processes $WORKERS;
worker_rlimit_nofile $((4 * MAXCONN));
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;

events {
    worker_connections $((2 * MAXCONN));   # nginx counts client + upstream connections
}

http {
    access_log off;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path       $TMP/nginx-tmp/proxy;
    fastcgi_temp_path     $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path       $TMP/nginx-tmp/uwsgi;
    scgi_temp_path        $TMP/nginx-tmp/scgi;

    keepalive_timeout 60s;
    keepalive_requests 1000000;   # limpet and HAProxy do not cap requests per client connection
    client_header_timeout 10s;
    proxy_connect_timeout 3s;
    proxy_read_timeout 60s;
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 3;

    # every pool: keep-alive to the backends
    upstream app {
EOF
    for i in $(seq "$NODES"); do
        echo "        server 127.0.0.1:$((PORT_BASE + i));"
    done
    cat <<EOF
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
    for i in $(seq "$NODES"); do
        cat <<EOF
    upstream node$i {
        server 127.0.0.1:$((PORT_BASE + i));
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
    done
    # cookie: route by the SERVERID cookie's value (nginx open source cannot
    # insert the cookie; routing only). jvm_route: the route after the FIRST
    # "." of JSESSIONID. Unknown or absent → the round-robin pool.
    echo '    map $cookie_SERVERID $by_serverid {'
    echo '        default app;'
    for i in $(seq "$NODES"); do echo "        node$i node$i;"; done
    echo '    }'
    echo '    map $cookie_JSESSIONID $by_jvm_route {'
    echo '        default app;'
    for i in $(seq "$NODES"); do echo "        \"~^[^.]*\\.node$i\$\" node$i;"; done
    echo '    }'
    cat <<EOF

    server {
        listen $LB_ADDR;
        location / {
            proxy_pass http://$upstream_target;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
}

start_balancer() { # start_balancer NAME SCENARIO → sets LB_PID
    local name=$1 scenario=$2 conf
    SCRAPE_URL=
    port_free "$LB_PORT" || die "port $LB_PORT is still in use before starting $name"
    case $name in
        limpet)
            conf=$TMP/lb-$scenario.yaml
            limpet_config "$scenario" >"$conf"
            mkdir -p "$TMP/limpet-state"
            "$LIMPET_BIN" check --config "$conf" >"$TMP/limpet-check.log" 2>&1 ||
                die "limpet rejected $conf: $(cat "$TMP/limpet-check.log")"
            "$LIMPET_BIN" --config "$conf" >"$TMP/limpet-$scenario.log" 2>&1 &
            LB_PID=$!
            SCRAPE_URL="http://$ADMIN_ADDR/metrics"
            ;;
        haproxy)
            conf=$TMP/haproxy-$scenario.cfg
            haproxy_config "$scenario" >"$conf"
            haproxy -c -q -f "$conf" >"$TMP/haproxy-check.log" 2>&1 ||
                die "haproxy rejected $conf: $(cat "$TMP/haproxy-check.log")"
            # -db: foreground, no master process: one process with nbthread threads
            haproxy -db -f "$conf" >"$TMP/haproxy-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
        nginx)
            conf=$TMP/nginx-$scenario.conf
            nginx_config "$scenario" >"$conf"
            mkdir -p "$TMP/nginx-tmp"
            nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-check.log" 2>&1 ||
                die "nginx rejected $conf: $(cat "$TMP/nginx-check.log")"
            # daemon off: the master stays in the foreground, so $! is the master
            nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
    esac
    PIDS+=("$LB_PID")
    wait_http "http://$LB_ADDR/static/ready" "$LB_PID" "$name"
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
            if [[ -n $SCRAPE_URL ]] && ((tick++ % 2 == 0)); then
                curl -s -o /dev/null --max-time 1 "$SCRAPE_URL" || true
            fi
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

# The warm-up runs this script: it counts responses per x-demo-node header,
# so every scenario shows where its requests really went.
cat >"$TMP/count_nodes.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
    local node = "status" .. status
    for k, v in pairs(headers) do
        if string.lower(k) == "x-demo-node" then node = v end
    end
    counts[node] = (counts[node] or 0) + 1
end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts") or {}) do total[k] = (total[k] or 0) + v end
    end
    local keys = {}
    for k in pairs(total) do table.insert(keys, k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do table.insert(parts, k .. "=" .. total[k]) end
    io.write("NODES " .. table.concat(parts, " ") .. "\n")
end
EOF

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
NCPU=$(nproc)
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

ROWS=()       # table rows
SANITY=()     # sanity lines
declare -A RPS

measure() { # measure NAME SCENARIO PID TARGET
    local name=$1 scenario=$2 pid=$3 target=$4
    local header url=http://$target$PATH_UNDER_TEST
    header=$(scenario_header "$scenario")

    # sanity: 6 single requests with curl, which node answered each
    local seen=() n
    for _ in $(seq 6); do
        local curl_args=(-s -o /dev/null -D - --max-time 5)
        [[ -n $header ]] && curl_args+=(-H "$header")
        n=$(curl "${curl_args[@]}" "$url" | tr -d '\r' |
            awk -F': ' 'tolower($1)=="x-demo-node"{print $2}')
        seen+=("${n:-none}")
    done
    local line
    line="$scenario / $name: curl x6 → ${seen[*]} (expected: $(scenario_expect "$scenario"))"
    log "  sanity: $line"
    SANITY+=("$line")

    local idle=0
    [[ $pid != - ]] && idle=$(rss_kib "$pid")
    [[ $pid != - ]] && start_sampler "$pid" "$TMP/rss-$name-$scenario"

    # warm-up (counts where responses went), then the measured run
    run_wrk "$url" "$WARMUP" "$TMP/warmup-$name-$scenario.txt" "$header" -s "$TMP/count_nodes.lua"
    local dist
    dist=$(sed -n 's/^NODES //p' "$TMP/warmup-$name-$scenario.txt")

    wait_quiet
    local lb0=0 nodes0 sys0 lb1=0 nodes1 sys1
    [[ $pid != - ]] && lb0=$(cpu_ticks "$pid")
    nodes0=$(cpu_ticks "$NODES_PID")
    sys0=$(system_busy_ticks)
    run_wrk "$url" "$DURATION" "$TMP/wrk-$name-$scenario.txt" "$header"
    sys1=$(system_busy_ticks)
    nodes1=$(cpu_ticks "$NODES_PID")
    [[ $pid != - ]] && lb1=$(cpu_ticks "$pid")

    local peak=0 hwm=0
    if [[ $pid != - ]]; then
        stop_sampler
        peak=$(cat "$TMP/rss-$name-$scenario")
        local now
        now=$(rss_kib "$pid")
        ((now > peak)) && peak=$now
        hwm=$(hwm_kib "$pid")
    fi

    local f=$TMP/wrk-$name-$scenario.txt
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
    RPS[$name/$scenario]=$rps

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
    ROWS+=("$scenario|$name|$rps|$p50|$p99|$non2xx|$sockerr|$reqs|$lb_us|$lb_pct|$other_pct|$mem_idle|$mem_peak|$mem_hwm|${dist:-?}")
    log "  $scenario / $name: ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${non2xx}, socket errors ${sockerr}," \
        "balancer CPU ${lb_us} µs/req (${lb_pct}% of a core), other load ${other_pct}%, RSS ${mem_idle} → ${mem_peak} MiB; warm-up: ${dist}"
}

# --------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------
log "demo nodes on 127.0.0.1:$((PORT_BASE + 1))-$((PORT_BASE + NODES)); balancers on $LB_ADDR; wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP)"
log "baseline: wrk directly against node2"
measure direct baseline - "$NODE2"

for scenario in $SCENARIOS; do
    for name in $BALANCERS; do
        log "$scenario / $name"
        start_balancer "$name" "$scenario"
        measure "$name" "$scenario" "$LB_PID" "$LB_ADDR"
        stop_pid "$LB_PID"
    done
done

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
report() {
    cat <<EOF
# limpet vs HAProxy vs nginx — $(date '+%F %R %Z')

* Machine: $(nproc) CPUs ($CPU), $MEM RAM, Linux $(uname -r)
* Versions: $V_LIMPET (git $V_GIT), $V_HAPROXY, $V_NGINX, $V_WRK
* Load: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency\` after a $WARMUP warm-up, \`GET $PATH_UNDER_TEST\`
  (the demo node answers it with ~200 bytes of JSON and creates no session);
  3 demo nodes (one \`demo_nodes\` process); each balancer: $WORKERS worker threads/processes,
  keep-alive to the backends, access logs off, restarted for every scenario.
* Scenarios: \`round_robin\` no cookie, no affinity; \`cookie\` \`Cookie: SERVERID=node2\`
  (limpet \`sticky: cookie\`, HAProxy \`cookie SERVERID insert indirect nocache\`, nginx map → node2's upstream);
  \`jvm_route\` \`Cookie: JSESSIONID=<id>.node2\` (limpet \`sticky: jvm_route\`, HAProxy
  \`use-server … req.cook(JSESSIONID) -m end\`, nginx regex map → node2's upstream). Details: README.md.
* **wrk, the backends and the balancer share the same $(nproc) cores**, so absolute
  numbers are modest and partly measure the load generator; compare the balancers
  with each other (and with the direct baseline), not with published figures.

| scenario | balancer | req/s | % of HAProxy | p50 ms | p99 ms | non-2xx | socket errors | requests | balancer CPU µs/req | balancer CPU % | other CPU % | RSS idle MiB | RSS peak MiB | VmHWM MiB | warm-up responses per node |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
    local row scenario name rps rel ref
    for row in "${ROWS[@]}"; do
        IFS='|' read -r scenario name rps _ <<<"$row"
        ref=${RPS[haproxy/$scenario]:-}
        if [[ -n $ref && $ref -gt 0 ]]; then
            rel=$(awk -v a="$rps" -v b="$ref" 'BEGIN { printf "%.0f%%", 100 * a / b }')
        else
            rel=-
        fi
        IFS='|' read -r -a f <<<"$row"
        echo "| ${f[0]} | ${f[1]} | ${f[2]} | $rel | ${f[3]} | ${f[4]} | ${f[5]} | ${f[6]} | ${f[7]} | ${f[8]} | ${f[9]} | ${f[10]} | ${f[11]} | ${f[12]} | ${f[13]} | ${f[14]} |"
    done
    cat <<EOF

CPU: *balancer CPU* is the user + system time of the balancer's processes
during the measured run, per request and as a share of one core: it is the
least noisy number here, since it does not depend on how the 2 cores were
shared. *other CPU* is the share of the machine used by anything but wrk, the
demo nodes and the balancer during the run (other jobs): above a few percent,
distrust that row's req/s and latency.

RSS: resident memory of the balancer (nginx: master + workers), *idle* after
start-up and the 6 curl checks, *peak* the largest 0.5 s sample during warm-up and
run, *VmHWM* the kernel's high-water mark (summed over processes) at the end.

nginx \`cookie\`: open-source nginx cannot insert a cookie; it only routes by the
SERVERID value (map → per-node upstream). nginx \`jvm_route\`: a regex map on
\$cookie_JSESSIONID → per-node upstream. See README.md.

Sanity (\`x-demo-node\` of 6 curl requests through each balancer, before the run):

\`\`\`
EOF
    printf '%s\n' "${SANITY[@]}"
    echo '```'
}

report | tee "$OUT"
log "written: $OUT"

# fail the run if anything returned errors
bad=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    if [[ ${f[5]} != 0 || ${f[6]} != 0 ]]; then
        log "run.sh: ${f[0]} / ${f[1]}: ${f[5]} non-2xx, ${f[6]} socket errors"
        bad=1
    fi
done
exit "$bad"
