#!/usr/bin/env bash
# stop.sh [DIR] — stop the example Tomcat nodes started by start.sh: SIGTERM
# (a clean Tomcat shutdown), then SIGKILL for any node still alive after
# LIMPET_TOMCAT_STOP_TIMEOUT seconds (default 30). Leaves DIR (logs) in place.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

case "${1:-}" in -h|--help) sed -n '2,5p' "$0"; exit 0 ;; esac
set_dir "${1:-}"

declare -A pids=()
for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then
        pids[$n]=$pid
        kill -TERM "$pid" 2>/dev/null || true
        log "node$n: SIGTERM sent (pid $pid)"
    else
        log "node$n: not running"
        rm -f "$(node_pidfile "$n")"
    fi
done

deadline=$(( $(date +%s) + STOP_TIMEOUT ))
while (( ${#pids[@]} > 0 )); do
    for n in "${!pids[@]}"; do
        if ! pid_alive "${pids[$n]}"; then
            log "node$n stopped"
            rm -f "$(node_pidfile "$n")"
            unset "pids[$n]"
        fi
    done
    (( ${#pids[@]} == 0 )) && break
    if (( $(date +%s) >= deadline )); then
        for n in "${!pids[@]}"; do
            log "node$n still alive after ${STOP_TIMEOUT}s: SIGKILL (pid ${pids[$n]})"
            kill -KILL "${pids[$n]}" 2>/dev/null || true
        done
        deadline=$(( $(date +%s) + 10 ))
        STOP_TIMEOUT=10
    fi
    sleep 0.1
done
