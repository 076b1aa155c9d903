#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR  # lib/*.sh, from any directory
# The Markdown report of a benchmark run, from the JSON lines run.sh appends
# to its RESULTS file: the table of medians over rounds, the sanity lines and
# every run's numbers. run.sh calls it at the end; by hand it also reports a
# run that stopped before the end, with what was measured:
#
#   benches/compare/report.sh benches/compare/results-<date>.jsonl > results-<date>.md
#
# Exit status 1 if any run recorded a problem (errors, misrouted requests).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '%s\n' "$*" >&2; }
die() { log "report.sh: $*"; exit 2; }

# shellcheck source=lib/scenarios.sh
source "$here/lib/scenarios.sh"

(($# == 1)) || die "usage: report.sh RESULTS.jsonl"
RESULTS=$1
[[ -s $RESULTS ]] || die "$RESULTS is missing or empty"
command -v jq >/dev/null 2>&1 || die "jq is needed (apt-get install -y jq)"
jq -e -s 'map(select(.kind == "setup")) | length == 1' "$RESULTS" >/dev/null ||
    die "$RESULTS does not start a run (no setup line): is it a file run.sh wrote?"

# --------------------------------------------------------------------------
# the run: settings (setup line), its end (done line, if it got there)
# --------------------------------------------------------------------------
US=$'\x1f'   # between fields: a character no value contains
IFS=$US read -r V_GIT TREE NCPU CPU MEM KERNEL V_LIMPET V_LIMPET_B V_HAPROXY V_NGINX V_WRK V_OPENSSL WORKERS PINNING \
    THREADS CONNECTIONS DURATION WARMUP ROUNDS SCENARIOS BALANCERS LB_PORT STARTED SC_TOOL SC_DURATION SC_NOTE SCRAPED \
    RATE < <(
    jq -r 'select(.kind == "setup") | [.commit, .tree, .cpus, .cpu, .mem, .kernel, .versions.limpet,
        (.versions.limpet_b // ""), .versions.haproxy, .versions.nginx, .versions.wrk, (.versions.openssl // "?"), .workers, .pinning,
        .threads, .connections, .duration, .warmup, .rounds, (.scenarios | join(" ")),
        (.balancers | join(" ")), .lb_port, .t, (.syscalls.tool // ""), (.syscalls.duration // ""),
        (.syscalls.note // ""), (.scraped // "limpet"), (.pace.rate // "")]
        | map(tostring) | join("\u001f")' "$RESULTS")
# shellcheck disable=SC2034  # read by scenario_balancers and balancer_target
LB_ADDR=127.0.0.1:$LB_PORT
TLS=0
[[ " $SCENARIOS " == *" tls_"* ]] && TLS=1
ENDED=$(jq -r 'select(.kind == "done") | .t' "$RESULTS")
RUNS=$(jq -s 'map(select(.kind == "run")) | length' "$RESULTS")
if [[ -n $ENDED ]]; then
    ELAPSED=$((ENDED - STARTED))
else   # stopped before the end: report up to the last run measured
    ENDED=$(jq -s -r --argjson t "$STARTED" 'map(select(.kind == "run") | .t) | max // $t' "$RESULTS")
    ELAPSED=
fi

# --------------------------------------------------------------------------
# the runs, keyed "scenario|balancer|round", formatted as run.sh logs them
# --------------------------------------------------------------------------
declare -A R_RPS R_P50 R_P99 R_US R_USER R_SYS R_PCT R_LOAD R_OTHER R_IDLE R_PEAK R_HWM R_NON2XX R_SOCK R_REQS R_DIST R_POS R_SANITY R_TLS
PROBLEMS=()
while IFS=$US read -r scenario name round pos rps p50 p99 us user sys pct load other idle peak hwm non2xx sock reqs dist tls sanity; do
    k="$scenario|$name|$round"
    R_RPS[$k]=$rps R_P50[$k]=$p50 R_P99[$k]=$p99 R_US[$k]=$us R_USER[$k]=$user R_SYS[$k]=$sys
    R_PCT[$k]=$pct R_LOAD[$k]=$load R_OTHER[$k]=$other
    R_IDLE[$k]=$idle R_PEAK[$k]=$peak R_HWM[$k]=$hwm R_NON2XX[$k]=$non2xx R_SOCK[$k]=$sock
    R_REQS[$k]=$reqs R_DIST[$k]=$dist R_POS[$k]=$pos R_TLS[$k]=$tls R_SANITY[$k]=$sanity
done < <(
    jq -r 'select(.kind == "run") | [.scenario, .balancer, .round, .order, .rps, .p50_ms, .p99_ms,
        .cpu_us_per_req, .user_us_per_req, .sys_us_per_req, .cpu_pct_of_core, .load_cpu_pct, .other_cpu_pct, .rss_idle_mib, .rss_peak_mib, .vmhwm_mib,
        .non2xx, .socket_errors, .requests, .warmup, (.tls // ""), .sanity]
        | map(if . == null then "-" else tostring end) | join("\u001f")' "$RESULTS" |
        # numbers with the decimals run.sh gives them; latencies as wrk reports them
        awk -v FS="$US" -v OFS="$US" '
            function f(fmt, v) { return v == "-" ? v : sprintf(fmt, v) }
            function ms(v) { return v == "-" ? v : sprintf(v + 0 < 1 ? "%.3f" : v + 0 < 1000 ? "%.2f" : "%.0f", v) }
            { $5 = f("%.0f", $5); $6 = ms($6); $7 = ms($7); $8 = f("%.1f", $8); $9 = f("%.1f", $9)
              $10 = f("%.1f", $10); $11 = f("%.0f", $11); $12 = f("%.0f", $12); $13 = f("%.0f", $13)
              $14 = f("%.1f", $14); $15 = f("%.1f", $15); $16 = f("%.1f", $16); print }')
while IFS= read -r p; do PROBLEMS+=("$p"); done < <(jq -r 'select(.kind == "run") | .problems[]' "$RESULTS")

# the system calls counted after the last round, keyed "scenario|balancer":
# the cells of their table, per request
declare -A S_ROW=()
while IFS=$US read -r scenario name cells; do
    S_ROW[$scenario|$name]=$cells
done < <(
    # 2 decimals, 3 below 0.1 (mprotect, madvise: a few per thousand requests)
    jq -r 'def pad($w): tostring | ("000" + .) | .[length - $w:];
        def n: if . == 0 then "0" elif . < 0.1 then "0." + (. * 1000 | round | pad(3))
               else (. * 100 | round) as $c | "\($c / 100 | floor)." + ($c % 100 | pad(2)) end;
        select(.kind == "syscalls") | .per_request as $p | .requests as $requests
        | (.other_per_request | to_entries | sort_by(-.value) | .[:3] | map("\(.key) \(.value | n)")
           | join(", ")) as $others
        | [.scenario, .balancer,
           ([$p.total, $p.read_recv, $p.write_send, $p.epoll_wait, $p.futex, $p.mprotect, $p.madvise, $p.other]
             | map(n) + [$others, "\($requests)"] | join(" | "))]
        | join("\u001f")' "$RESULTS")

# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------
numbers() { # the numeric ones of the arguments, in increasing order, one per line
    printf '%s\n' "$@" | awk '/^[0-9]+([.][0-9]+)?$/' | sort -g
}
median() { # median of the numeric arguments ("-" when none)
    numbers "$@" |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
column() { # column ARRAY SCENARIO NAME → the values of every round
    local -n arr=$1
    local r
    for ((r = 1; r <= ROUNDS; r++)); do echo "${arr[$2|$3|$r]:--}"; done
}
# shellcheck disable=SC2046  # one word per round
med() { median $(column "$@"); }
spread() { # spread ARRAY SCENARIO NAME → "lowest–highest" of the rounds, "-" with fewer than 2
    local lo hi
    # shellcheck disable=SC2046  # one word per round
    read -r lo hi < <(numbers $(column "$@") | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR < 2) print "- -"; else print lo, hi }')
    [[ $lo == - ]] && { echo -; return; }
    echo "$(fmt_ms "$lo")–$(fmt_ms "$hi")"
}
total() { column "$@" | awk '$1 ~ /^[0-9]+$/ { s += $1 } END { print s + 0 }'; }
fmt() { # fmt FORMAT VALUE ("-" stays)
    [[ $2 == - ]] && { echo -; return; }
    awk -v f="$1" -v v="$2" 'BEGIN { printf f, v }'
}
fmt_ms() {
    [[ $1 == - ]] && { echo -; return; }
    awk -v v="$1" 'BEGIN { if (v < 1) printf "%.3f", v; else if (v < 100) printf "%.2f", v; else printf "%.0f", v }'
}
ran() { # ran SCENARIO NAME: measured in at least one round (a run that stopped may not have got there)
    local r
    for ((r = 1; r <= ROUNDS; r++)); do [[ -n ${R_POS[$1|$2|$r]:-} ]] && return 0; done
    return 1
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
What \`openssl s_client\` ($V_OPENSSL,
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

syscalls_report() { # system calls per request, by call (none in results files from before they were counted)
    [[ -n $SC_NOTE ]] || return 0
    echo
    if ((${#S_ROW[@]} == 0)); then
        echo "System calls per request: $SC_NOTE."
        return 0
    fi
    local how="\`perf stat\` on the kernel's syscall tracepoints (\`raw_syscalls:sys_enter\`,
\`syscalls:sys_enter_<call>\`) for the balancer's processes"
    [[ $SC_TOOL == strace ]] &&
        how="\`strace -c -f\` attached to the balancer's processes (it slows them a lot: the counts hold, not the timing)"
    cat <<EOF
System calls per request, by call: counted on a $SC_DURATION wrk run of their own right after
the last round's measured run of each balancer (never during a measured run), with
$how.

| scenario | balancer | all | read, recv* | write, send*, writev | epoll_wait | futex | mprotect | madvise | other | largest others | requests counted |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|
EOF
    local scenario name who_list
    for scenario in $SCENARIOS; do
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for name in "${who_list[@]}"; do
            [[ -n ${S_ROW[$scenario|$name]:-} ]] && echo "| $scenario | $name | ${S_ROW[$scenario|$name]} |"
        done
    done
    cat <<EOF

Each column sums the calls of its group: *read, recv\**: read, readv, pread64, recvfrom,
recvmsg, recvmmsg; *write, send\*, writev*: write, writev, pwrite64, sendto, sendmsg,
sendmmsg, sendfile64, splice; *epoll_wait*: epoll_wait, epoll_pwait(2); *other*: every
other call, its largest parts named$( [[ $SC_TOOL == perf ]] && echo " (of the calls perf counts by name: lib/syscalls.sh)").
EOF
}

took() { # how long the run took, or that it stopped
    if [[ -n $ELAPSED ]]; then
        echo "* Took $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
    else
        local t=$((ENDED - STARTED))
        echo "* **Incomplete**: the run stopped after $RUNS measured runs ($((t / 60)) min $((t % 60)) s);"
        echo "  the tables show those."
    fi
}

scraped() { # which balancers' metrics the run scraped (before 2026-12-06: limpet's only)
    if [[ $SCRAPED == all ]]; then
        printf '%s' "every balancer's metrics scraped every second (limpet \`/metrics\`, HAProxy's Prometheus
  exporter, nginx \`stub_status\`)."
    else
        printf '%s' "limpet with its admin endpoint on and \`/metrics\` scraped every second (the others not scraped)."
    fi
}
paced() { # the measured runs' pace (RATE), or nothing when unpaced
    [[ -n $RATE ]] || return 0
    printf '%s' "
  **paced** (\`RATE=$RATE\`, \`templates/pace.lua\`): requests leave on a Poisson schedule
  of $RATE req/s (at most one in flight per connection), so every balancer is offered
  the same load and p50 and p99 are latencies at that load, not at the load side's limit;"
}
report() {
    local rounds_word=rounds
    ((ROUNDS == 1)) && rounds_word=round
    cat <<EOF
# limpet vs HAProxy vs nginx — $(date -d "@$ENDED" '+%F %R %Z')

* Commit: **$V_GIT**, $TREE
* Machine: $NCPU CPUs ($CPU), $MEM RAM, Linux $KERNEL
* Versions: $V_LIMPET, $V_HAPROXY, $V_NGINX, $V_WRK$([[ -n $V_LIMPET_B ]] && printf '\n* limpet_b: %s, same configuration as limpet' "$V_LIMPET_B")
* Workers: $WORKERS for every balancer (limpet \`workers: $WORKERS\`, HAProxy \`nbthread $WORKERS\`,
  nginx \`worker_processes $WORKERS\`); keep-alive to the backends, access logs off;
  $(scraped)
* Pinning: $PINNING.
* Load: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency --timeout 5s\` after a $WARMUP warm-up;$(paced)
  3 demo nodes (one \`demo_nodes\` process). Fresh demo nodes and a freshly started
  balancer for every run; $ROUNDS $rounds_word per scenario, the balancers' order rotated
  each round; the table shows the **median over rounds** (errors: the sum).
$(took)

| scenario | balancer | req/s | req/s ÷ HAProxy | req/s ÷ baseline | p50 ms | p99 ms | p99 ms, rounds | CPU µs/req | CPU/req ÷ HAProxy | user µs/req | user/req ÷ HAProxy | system µs/req | peak RSS MiB | non-2xx | socket errors |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    local scenario name base_rps hap_rps hap_us hap_user rps us user who_list
    local base_static=- base_new=-
    base_static=$(med R_RPS baseline direct)
    base_new=$(med R_RPS baseline direct_new)
    for scenario in $SCENARIOS; do
        base_rps=$base_static
        [[ $scenario == learn_new ]] && base_rps=$base_new
        hap_rps=$(med R_RPS "$scenario" haproxy)
        hap_us=$(med R_US "$scenario" haproxy)
        hap_user=$(med R_USER "$scenario" haproxy)
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        local shown=0
        for name in "${who_list[@]}"; do
            ran "$scenario" "$name" || continue
            shown=1
            local b=$base_rps
            [[ $name == direct_new ]] && b=$base_new
            rps=$(med R_RPS "$scenario" "$name")
            us=$(med R_US "$scenario" "$name")
            user=$(med R_USER "$scenario" "$name")
            echo "| $scenario | $name | $(fmt %.0f "$rps") | $(ratio "$rps" "$hap_rps") | $(ratio "$rps" "$b") |" \
                "$(fmt_ms "$(med R_P50 "$scenario" "$name")") | $(fmt_ms "$(med R_P99 "$scenario" "$name")") |" \
                "$(spread R_P99 "$scenario" "$name") | $(fmt %.1f "$us") | $(ratio "$us" "$hap_us") | $(fmt %.1f "$user") | $(ratio "$user" "$hap_user") |" \
                "$(fmt %.1f "$(med R_SYS "$scenario" "$name")") | $(fmt %.1f "$(med R_PEAK "$scenario" "$name")") |" \
                "$(total R_NON2XX "$scenario" "$name") | $(total R_SOCK "$scenario" "$name") |"
        done
        if ((shown)) && [[ ($scenario == learn_hit || $scenario == learn_new) && " $BALANCERS " == *" nginx "* ]]; then
            echo "| $scenario | nginx | not run | | | | | | | | | | | | | |"
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

Columns: *req/s*, *p50*, *p99* from wrk (medians over rounds); *p99 ms, rounds* the
lowest and the highest p99 of the rounds: a difference of medians smaller than that
spread is not the balancer's (an A/A run, \`LIMPET_B\` set to the same binary, shows
how far one balancer differs from itself); *÷ HAProxy* the ratio to HAProxy in the same
scenario (CPU, user: above 1 means more CPU per request than HAProxy); *÷ baseline* the share
of the direct baseline's req/s that gets through the balancer; *CPU µs/req* the
balancer's user + system time (\`/proc/PID/stat\`, nginx master + workers) over the
measured run divided by its requests, and its two parts: *user µs/req*, the time in
the balancer's own code (what it controls), and *system µs/req*, the time the kernel
spent on its behalf (its system calls, mostly socket work); *peak RSS* the largest
resident-memory sample (every 0.5 s during warm-up and run, nginx summed over its
processes); *non-2xx* and *socket errors* summed over the rounds. See README.md.
EOF
    syscalls_report
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
            [[ -n ${R_SANITY[$scenario|$name|1]:-} ]] && echo "${R_SANITY[$scenario|$name|1]}"
        done
    done
    cat <<EOF
\`\`\`

<details><summary>Every run ($ROUNDS $rounds_word per scenario; <i>order</i> is the run's place in its round)</summary>

| scenario | round | order | balancer | req/s | p50 ms | p99 ms | CPU µs/req | user µs/req | system µs/req | balancer CPU % of a core | load side CPU % of a core | other CPU % | RSS idle MiB | RSS peak MiB | VmHWM MiB | non-2xx | socket errors | requests | warm-up responses per node |
|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
    local r k
    for scenario in $SCENARIOS; do
        read -r -a who_list <<<"$(scenario_balancers "$scenario")"
        for ((r = 1; r <= ROUNDS; r++)); do
            for name in "${who_list[@]}"; do
                k="$scenario|$name|$r"
                [[ -n ${R_RPS[$k]:-} ]] || continue
                echo "| $scenario | $r | ${R_POS[$k]} | $name | ${R_RPS[$k]} | ${R_P50[$k]} | ${R_P99[$k]} | ${R_US[$k]} |" \
                    "${R_USER[$k]} | ${R_SYS[$k]} |" \
                    "${R_PCT[$k]} | ${R_LOAD[$k]} | ${R_OTHER[$k]} | ${R_IDLE[$k]} | ${R_PEAK[$k]} | ${R_HWM[$k]} | ${R_NON2XX[$k]} |" \
                    "${R_SOCK[$k]} | ${R_REQS[$k]} | ${R_DIST[$k]} |"
            done
        done
    done
    cat <<EOF

*load side CPU %*: wrk and the demo nodes together, in % of one core (runs
before 2026-12-06: -); when it nears 100 times the load CPUs, the load side set
the pace and req/s and p99 say little about the balancer.
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

report
((${#PROBLEMS[@]} == 0)) || exit 1
