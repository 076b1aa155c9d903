# Taking the numbers of one run: CPU time and memory of the balancer, wrk's
# report, and the sanity checks; `measure` appends them to RESULTS as one
# JSON line the moment the run is over.
# Sourced by run.sh; reads here, TMP, RESULTS, THREADS, CONNECTIONS, RATE,
# DURATION, WARMUP, NCPU, QUIET_IDLE_PCT, WAIT_QUIET and NODES_PID.
# shellcheck shell=bash disable=SC2154  # globals set by run.sh

PROBLEMS=()   # one line per run that saw errors or misrouted requests

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
        # The sampler shares the load CPU with wrk and the demo nodes, so it
        # forks nothing per sample (a fork + exec costs about a millisecond
        # there, and shows in everyone's p99): the balancer's processes are
        # listed once (nginx's workers are up by now), RSS is read with
        # builtins, and it sleeps in `read -t` on a pipe nobody writes to.
        local pids=() p key val rest max=0 cur tick=0 nap
        read -r -a pids <<<"$(proc_tree "$pid" | tr '\n' ' ')"
        exec {nap}<> <(:)
        while kill -0 "$pid" 2>/dev/null; do
            cur=0
            for p in "${pids[@]}"; do
                while read -r key val rest; do
                    if [[ $key == VmRSS: ]]; then cur=$((cur + val)); break; fi
                done <"/proc/$p/status" 2>/dev/null || true
            done
            if ((cur > max)); then max=$cur; echo "$max" >"$file"; fi
            # Like Prometheus, only more often: the cost of metrics is in the run.
            if [[ -n $SCRAPE_URL ]] && ((tick % 2 == 0)); then
                curl -s -o /dev/null --max-time 1 "$SCRAPE_URL" || true
            fi
            tick=$((tick + 1))
            read -r -t 0.5 -u "$nap" _ || true
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

WRK_ARGS=()
wrk_args() { # wrk_args DURATION HEADER → WRK_ARGS: wrk's options for a run of DURATION
    WRK_ARGS=(-t"$THREADS" -c"$CONNECTIONS" -d"$1" --latency --timeout 5s)
    # Paced (RATE): the warm-up's own -s, given after these, takes its place.
    if [[ -n $RATE ]]; then WRK_ARGS+=(-s "$here/templates/pace.lua"); fi
    if [[ -n $2 ]]; then WRK_ARGS+=(-H "$2"); fi
}
run_wrk() { # run_wrk URL DURATION OUTFILE HEADER [wrk args...]; wrk's own CPU seconds → OUTFILE.cpu
    local url=$1 dur=$2 out=$3 header=$4
    shift 4
    wrk_args "$dur" "$header"
    local TIMEFORMAT='%3U %3S' rc=0
    { time wrk "${WRK_ARGS[@]}" "$@" "$url" >"$out" 2>&1 || rc=$?; } 2>"$out.cpu"
    if ((rc != 0)); then
        log "wrk failed: $(cat "$out")"
        return 1
    fi
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # "USER SYSTEM": utime and stime of PID and its children (all threads), in clock ticks
    local user=0 sys=0 p u s
    for p in $(proc_tree "$1"); do
        # fields after the ")" of the command name: utime is the 12th, stime the 13th
        read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}' || true) || true
        user=$((user + ${u:-0})) sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}
ticks_since() { # ticks_since "USER0 SYSTEM0" "USER1 SYSTEM1" → "USER SYSTEM TOTAL" used in between
    local u0 s0 u1 s1
    read -r u0 s0 <<<"$1"
    read -r u1 s1 <<<"$2"
    echo "$((u1 - u0)) $((s1 - s0)) $((u1 - u0 + s1 - s0))"
}
us_per_req() { # us_per_req TICKS REQUESTS → CPU µs per request, 1 decimal
    awk -v t="$1" -v hz="$CLK_TCK" -v r="$2" 'BEGIN { printf "%.1f", (r > 0 ? t / hz * 1e6 / r : 0) }'
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

# measure NAME SCENARIO ROUND POS PID TARGET
measure() {
    local name=$1 scenario=$2 round=$3 pos=$4 pid=$5 target=$6
    local tag="$scenario-$name-r$round" sanity tls='' learned='' problems=()
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
    sanity="$scenario / $name (round $round): GET $path${header:+ with $header} → curl x6: ${seen[*]} (expected: $expect)"
    if [[ $scenario == tls_* ]]; then
        tls=$(tls_probe "$target")
        sanity+="; TLS: $tls"
        [[ $tls == "no handshake"* ]] && problems+=("$scenario / $name, round $round: openssl s_client: $tls")
    fi
    log "  sanity: $sanity"

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
    local lb0='0 0' nodes0 sys0 lb1='0 0' nodes1 sys1
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
        sanity+="; HAProxy's TLS handshakes in the measured run: $((f1 - f0)) full, $((r1 - r0)) resumed"
        log "  HAProxy's TLS handshakes in the measured run: $((f1 - f0)) full, $((r1 - r0)) resumed"
    fi

    if [[ $scenario == learn_* ]]; then
        learned=$(learned_sessions "$name")
        sanity+="; learned table after the run: $learned entries"
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

    # CPU: the balancer's own (µs per request: user + system, and each apart;
    # % of one core), and what the rest of the machine (not wrk, not the
    # nodes, not the balancer) used
    local wrk_cpu lb_user lb_sys lb_ticks nodes_ticks lb_us lb_user_us lb_sys_us lb_pct other_pct load_pct
    wrk_cpu=$(awk '{print $1 + $2}' "$f.cpu")
    read -r lb_user lb_sys lb_ticks <<<"$(ticks_since "$lb0" "$lb1")"
    read -r _ _ nodes_ticks <<<"$(ticks_since "$nodes0" "$nodes1")"
    lb_us=$(us_per_req "$lb_ticks" "$reqs")
    lb_user_us=$(us_per_req "$lb_user" "$reqs")
    lb_sys_us=$(us_per_req "$lb_sys" "$reqs")
    lb_pct=$(awk -v t="$lb_ticks" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * t / hz / s }')
    other_pct=$(awk -v sys=$((sys1 - sys0)) -v lb="$lb_ticks" -v nodes="$nodes_ticks" \
        -v w="$wrk_cpu" -v hz="$CLK_TCK" -v s="$secs" -v n="$NCPU" \
        'BEGIN { o = (sys - lb - nodes) / hz - w; if (o < 0) o = 0; printf "%.0f", 100 * o / (s * n) }')
    # The load side (wrk + the demo nodes), in % of one core: near 100 times
    # the load CPUs, the load side set the pace, not the balancer.
    load_pct=$(awk -v nodes="$nodes_ticks" -v w="$wrk_cpu" -v hz="$CLK_TCK" -v s="$secs" \
        'BEGIN { printf "%.0f", 100 * (nodes / hz + w) / s }')
    [[ $pid == - ]] && { lb_us=-; lb_user_us=-; lb_sys_us=-; lb_pct=-; }

    local mem_idle=- mem_peak=- mem_hwm=-
    if [[ $pid != - ]]; then
        mem_idle=$(mib "$idle")
        mem_peak=$(mib "$peak")
        mem_hwm=$(mib "$hwm")
    fi
    # where did the requests go (curl and warm-up), and did anything fail?
    local warm_nodes=()
    local w
    for w in ${dist:-none}; do warm_nodes+=("${w%%=*}"); done
    local mode=$scenario
    [[ $name == direct* ]] && mode=baseline
    if ! routing_ok "$mode" "${seen[@]}" "${warm_nodes[@]}"; then
        problems+=("$scenario / $name, round $round: requests went to ${seen[*]} (curl) and ${dist:-?} (warm-up); expected $expect")
    fi
    if [[ $non2xx != 0 || $sockerr != 0 ]]; then
        problems+=("$scenario / $name, round $round: $non2xx non-2xx responses, $sockerr socket errors")
    fi
    if [[ ${reqs:-0} == 0 ]]; then
        problems+=("$scenario / $name, round $round: not a single response in the measured run")
    fi
    log "  $scenario / $name (round $round): ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${non2xx}, socket errors ${sockerr}," \
        "balancer CPU ${lb_us} µs/req (user ${lb_user_us} + system ${lb_sys_us}; ${lb_pct}% of a core), load side ${load_pct}% of a core, other load ${other_pct}%, RSS ${mem_idle} → ${mem_peak} MiB; warm-up: ${dist}"
    PROBLEMS+=("${problems[@]}")

    # One line of JSON per run, appended at once: a run that stops later
    # keeps what was measured so far. report.sh reads these lines.
    jq -nc --arg scenario "$scenario" --arg balancer "$name" --argjson round "$round" --arg order "$pos" \
        --argjson rps "$(num "$rps")" --argjson p50_ms "$(num "$p50")" --argjson p99_ms "$(num "$p99")" \
        --argjson cpu_us_per_req "$(num "$lb_us")" --argjson user_us_per_req "$(num "$lb_user_us")" \
        --argjson sys_us_per_req "$(num "$lb_sys_us")" --argjson cpu_pct_of_core "$(num "$lb_pct")" \
        --argjson other_cpu_pct "$(num "$other_pct")" --argjson load_cpu_pct "$(num "$load_pct")" --argjson rss_idle_mib "$(num "$mem_idle")" \
        --argjson rss_peak_mib "$(num "$mem_peak")" --argjson vmhwm_mib "$(num "$mem_hwm")" \
        --argjson non2xx "$(num "$non2xx")" --argjson socket_errors "$(num "$sockerr")" \
        --argjson requests "$(num "$reqs")" --argjson seconds "$(num "$secs")" \
        --argjson curl "$(jq -nc '$ARGS.positional' --args "${seen[@]}")" --arg expected "$expect" \
        --arg warmup "${dist:-?}" --arg tls "$tls" --arg learned "$learned" --arg sanity "$sanity" \
        --argjson problems "$(jq -nc '$ARGS.positional' --args "${problems[@]}")" --argjson t "$(date +%s)" \
        '{kind: "run", $scenario, $balancer, $round, $order, $rps, $p50_ms, $p99_ms, $cpu_us_per_req,
          $user_us_per_req, $sys_us_per_req, $cpu_pct_of_core, $load_cpu_pct, $other_cpu_pct, $rss_idle_mib,
          $rss_peak_mib, $vmhwm_mib, $non2xx, $socket_errors, $requests, $seconds, $curl, $expected, $warmup,
          tls: (if $tls == "" then null else $tls end),
          learned: (if $learned == "" then null else ($learned | tonumber? // .) end),
          $sanity, $problems, $t}' \
        >>"$RESULTS"
}

num() { # a number as JSON; null for "-" (not measured) or anything else
    if [[ $1 =~ ^-?[0-9]+([.][0-9]+)?$ ]]; then echo "$1"; else echo null; fi
}
