# The balancer's system calls per request, counted on a short extra run
# after its measured run (never during one: counting slows the balancer, and
# strace a lot), by call, into a JSON line of their own ("kind":"syscalls").
# perf stat counts the kernel's syscall tracepoints for the balancer's
# threads, cheaply; strace -c (every call stops the process twice) only when
# perf cannot.
# Sourced by run.sh; reads TMP, RESULTS, SYSCALLS, SYSCALLS_DURATION and the
# wrk settings (through wrk_args), and adds to PIDS.
# shellcheck shell=bash disable=SC2154  # globals set by run.sh

# The groups the report shows, by call name; every other call is "other".
SYSCALL_GROUPS='{
  "read_recv": ["read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg"],
  "write_send": ["write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg",
                 "sendfile64", "splice"],
  "epoll_wait": ["epoll_wait", "epoll_pwait", "epoll_pwait2"],
  "futex": ["futex", "futex_waitv"],
  "mprotect": ["mprotect"],
  "madvise": ["madvise"]
}'
# perf counts the calls it is asked for: these, by name, are the usual rest
# of a proxy's calls; they go into "other" and name its largest part.
SYSCALL_OTHERS="epoll_ctl accept accept4 close shutdown connect socket setsockopt getsockopt
ioctl fcntl sched_yield getrandom mmap munmap mremap brk clock_gettime gettimeofday nanosleep
clock_nanosleep rt_sigprocmask rt_sigaction timerfd_settime eventfd2 io_uring_enter getpid"

SYSCALLS_TOOL=   # perf or strace: what syscalls_setup found working; empty: not counted
SYSCALLS_NOTE=   # how the calls are counted, or why they are not
PERF_EVENTS=     # perf: raw_syscalls:sys_enter and the syscalls:sys_enter_* tracepoints of the named calls

# syscalls_setup: pick the tool (perf if it may count tracepoints here, else
# strace), or say why the calls are not counted. Never stops the run.
syscalls_setup() {
    if [[ $SYSCALLS != 1 ]]; then
        SYSCALLS_NOTE="not counted (SYSCALLS=0)"
        return 0
    fi
    local out names n have
    if command -v perf >/dev/null 2>&1; then
        out=$(perf stat -x, -e raw_syscalls:sys_enter -- true 2>&1 || true)
        if [[ $out =~ (^|$'\n')[0-9]+,,raw_syscalls:sys_enter ]]; then
            have=$(perf list --raw-dump tracepoint 2>/dev/null | tr ' ' '\n' | sed -n 's/^syscalls:sys_enter_//p')
            names=$(jq -r '[.[][]] | join(" ")' <<<"$SYSCALL_GROUPS")
            PERF_EVENTS=raw_syscalls:sys_enter
            for n in $names $SYSCALL_OTHERS; do
                grep -qx "$n" <<<"$have" && PERF_EVENTS+=",syscalls:sys_enter_$n"
            done
            SYSCALLS_TOOL=perf
            SYSCALLS_NOTE="perf stat -e raw_syscalls:sys_enter + syscalls:sys_enter_<call> on the balancer's processes during a $SYSCALLS_DURATION wrk run after its last measured run"
            return 0
        fi
        log "perf cannot count syscall tracepoints here ($(head -1 <<<"$out")); trying strace"
    fi
    if command -v strace >/dev/null 2>&1 && strace -c -o /dev/null -- true >/dev/null 2>&1; then
        SYSCALLS_TOOL=strace
        SYSCALLS_NOTE="strace -c -f on the balancer's processes during a $SYSCALLS_DURATION wrk run after its last measured run (strace slows the balancer: counts only, its req/s means nothing)"
        return 0
    fi
    SYSCALLS_NOTE="not counted: neither perf (tracepoints) nor strace works here (apt-get install -y linux-perf strace, as root)"
    log "syscalls $SYSCALLS_NOTE"
}

# count_syscalls NAME SCENARIO ROUND PID TARGET: a SYSCALLS_DURATION wrk run
# with the scenario's request while the balancer's calls are counted; one
# JSON line. A count that fails is logged and leaves no line.
count_syscalls() {
    local name=$1 scenario=$2 round=$3 pid=$4 target=$5
    [[ -n $SYSCALLS_TOOL ]] || return 0
    local tag="$scenario-$name-r$round-syscalls" header url calls
    header=$(scenario_header "$scenario")
    url=$(scenario_scheme "$scenario")://$target$(scenario_path "$scenario")
    wrk_args "$SYSCALLS_DURATION" "$header"
    local out=$TMP/$tag
    case $SYSCALLS_TOOL in
        perf) syscalls_perf "$pid" "$out" "$url" ;;
        strace) syscalls_strace "$pid" "$out" "$url" ;;
    esac
    calls=$(cat "$out.calls" 2>/dev/null || true)
    local reqs secs rps
    reqs=$(awk '/requests in/{print $1}' "$out.wrk" 2>/dev/null || true)
    secs=$(awk '/requests in/{sub(/s,$/, "", $4); print $4}' "$out.wrk" 2>/dev/null || true)
    rps=$(awk '/^Requests\/sec:/{printf "%.0f", $2}' "$out.wrk" 2>/dev/null || true)
    if [[ -z $calls || ! ${reqs:-0} =~ ^[1-9][0-9]*$ ]]; then
        log "  syscalls of $name in $scenario: not counted ($SYSCALLS_TOOL; see $out.*)"
        return 0
    fi
    # calls is {"total": N, "calls": {"read": N, ...}}
    local line
    line=$(jq -c --arg scenario "$scenario" --arg balancer "$name" --argjson round "$round" \
        --arg tool "$SYSCALLS_TOOL" --argjson requests "$reqs" --argjson seconds "$(num "$secs")" \
        --argjson rps "$(num "$rps")" --argjson groups "$SYSCALL_GROUPS" --argjson t "$(date +%s)" '
        def per($n): ($n / $requests * 1000 | round) / 1000;
        .total as $total | .calls as $calls
        | ($groups | map_values([.[] as $c | $calls[$c] // 0] | add)) as $g
        | {kind: "syscalls", $scenario, $balancer, $round, $tool, $seconds, $requests, $rps,
           total: $total, calls: $calls,
           per_request: ($g + {other: ($total - ($g | add)), total: $total} | map_values(per(.))),
           other_per_request: ([$groups[][]] as $named | $calls | with_entries(select(.key as $k | $named | index($k) | not))
               | map_values(per(.)) | with_entries(select(.value > 0))),
           $t}' <<<"$calls")
    echo "$line" >>"$RESULTS"
    log "  syscalls per request ($SYSCALLS_TOOL, $reqs requests): $(jq -r '.per_request | to_entries | map("\(.key) \(.value)") | join(", ")' <<<"$line")"
}

# syscalls_perf PID OUT URL → OUT.calls: {"total": N, "calls": {...}}, empty if perf counted nothing
syscalls_perf() {
    local pids
    pids=$(proc_tree "$1" | paste -sd,)
    # perf counts the listed processes (all their threads) while wrk runs,
    # not wrk itself: -p with a command counts for the command's lifetime
    perf stat -x, -o "$2.perf" -e "$PERF_EVENTS" -p "$pids" -- wrk "${WRK_ARGS[@]}" "$3" >"$2.wrk" 2>&1 || true
    awk -F, '
        $3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ { total = $1 }
        $3 ~ /^syscalls:sys_enter_/ && $1 ~ /^[0-9]+$/ && $1 > 0 { sub(/^syscalls:sys_enter_/, "", $3); print $3, $1 }
        END { if (total != "") print "total", total }' "$2.perf" 2>/dev/null | syscalls_json >"$2.calls"
}

# syscalls_strace PID OUT URL → OUT.calls, as syscalls_perf
syscalls_strace() {
    local p n=0 sargs=(-c -f -o "$2.strace") spid attached
    for p in $(proc_tree "$1"); do sargs+=(-p "$p"); n=$((n + 1)); done
    strace "${sargs[@]}" 2>"$2.strace.log" &
    spid=$!
    PIDS+=("$spid")
    # "Process N attached" for each process (its threads come with -f);
    # strace exits at once if it may not attach
    for _ in $(seq 50); do
        attached=$(grep -c 'attached' "$2.strace.log" 2>/dev/null || true)
        ((${attached:-0} >= n)) && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    wrk "${WRK_ARGS[@]}" "$3" >"$2.wrk" 2>&1 || true
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    forget_pid "$spid"
    # "% time  seconds  usecs/call  calls  [errors]  syscall": calls is the 4th
    # field of every call's row; the total row (no usecs/call) is left out
    awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF, $4; total += $4 }
        END { if (total > 0) print "total", total }' "$2.strace" 2>/dev/null | syscalls_json >"$2.calls"
}

syscalls_json() { # "NAME COUNT" lines, "total N" among them → {"total": N, "calls": {...}}; nothing without a total
    jq -R -s -c 'split("\n") | map(select(. != "") | split(" ") | {key: .[0], value: (.[1] | tonumber)})
        | (map(select(.key == "total")) | first | .value) as $total
        | if $total == null then empty else {total: $total, calls: (map(select(.key != "total")) | from_entries)} end'
}
