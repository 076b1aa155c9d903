# shellcheck shell=bash
# The balancer's CPU cap (LB_CPU_PCT): every balancer is started in a cgroup
# whose CPU quota gives it LB_CPU_PCT % of each of its CPUs, so that the
# balancer, not wrk and the demo nodes, sets the pace. On 2 CPUs the load
# side fills its CPU before any balancer fills its own, and req/s and p99
# then measure the load side; with the same cap for all three, req/s
# measures what each balancer does with the same CPU. The quota is given per
# LB_CPU_PERIOD_US (default 2000 µs): a balancer that used its quota waits
# for the next period, so a shorter period keeps those waits short. They
# still show in p99, for all three alike.
#
# Needs root and a cgroup CPU controller (v2, or v1's `cpu` hierarchy).
# Uses PINNED, WORKERS, ON_LB_CPUS, PINNING, die; sets CAP_DIR.

CAP_DIR=

cap_setup() {
    [[ -z ${LB_CPU_PCT:-} ]] && return 0
    [[ $LB_CPU_PCT =~ ^[1-9][0-9]?$ ]] || die "LB_CPU_PCT must be a percentage from 1 to 99, not \`$LB_CPU_PCT\`"
    ((PINNED)) || die "LB_CPU_PCT needs the balancer on CPUs of its own (PIN=auto and more CPUs than WORKERS)"
    local period=${LB_CPU_PERIOD_US:-2000}
    if ! [[ $period =~ ^[0-9]+$ ]] || ((period < 1000 || period > 1000000)); then
        die "LB_CPU_PERIOD_US must be from 1000 to 1000000, not \`$period\`"
    fi
    local quota=$((period * LB_CPU_PCT * WORKERS / 100)) how
    if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        CAP_DIR=/sys/fs/cgroup/limpet-compare-$$
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control ||
            echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
            die "cannot enable the cgroup v2 cpu controller (LB_CPU_PCT needs root)"
        if ! { mkdir "$CAP_DIR" && echo "$quota $period" >"$CAP_DIR/cpu.max"; }; then
            die "cannot make the cgroup $CAP_DIR (LB_CPU_PCT needs root)"
        fi
        how="cgroup v2 cpu.max $quota $period"
    elif [[ -d /sys/fs/cgroup/cpu && -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then
        CAP_DIR=/sys/fs/cgroup/cpu/limpet-compare-$$
        if ! { mkdir "$CAP_DIR" && echo "$period" >"$CAP_DIR/cpu.cfs_period_us" &&
            echo "$quota" >"$CAP_DIR/cpu.cfs_quota_us"; }; then
            die "cannot make the cgroup $CAP_DIR (LB_CPU_PCT needs root)"
        fi
        how="cgroup v1 cpu.cfs_quota_us $quota per cpu.cfs_period_us $period"
    else
        die "LB_CPU_PCT needs a cgroup CPU controller (none under /sys/fs/cgroup)"
    fi
    # The shell joins the cgroup and execs the balancer: $! stays its PID,
    # and nginx's workers, forked by it, are in the cgroup too.
    # shellcheck disable=SC2016  # $$ and $@ belong to that shell
    ON_LB_CPUS=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CAP_DIR" "${ON_LB_CPUS[@]}")
    PINNING+="; the balancer capped at $LB_CPU_PCT % of each of its CPUs ($how µs)"
}

# After the balancers are gone (cleanup).
cap_cleanup() {
    [[ -n $CAP_DIR && -d $CAP_DIR ]] && rmdir "$CAP_DIR" 2>/dev/null
    return 0
}
