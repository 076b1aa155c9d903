#!/usr/bin/env bash
# kill-node.sh N [DIR] — the failover drill: SIGKILL node N (1..3) of the
# example cluster, no clean shutdown, exactly like a crash. The other nodes
# keep the replicated sessions. start.sh [DIR] brings node N back (it fetches
# the sessions from a peer when it rejoins).
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

n="${1:-}"
[[ "$n" =~ ^[1-3]$ ]] || die "usage: $0 N [DIR]   (N = 1, 2 or 3)"
set_dir "${2:-}"

pid="$(node_pid "$n")" || die "node$n is not running (no live pid in $(node_pidfile "$n"))"
kill -KILL "$pid"
deadline=$(( $(date +%s) + 10 ))
while pid_alive "$pid"; do
    (( $(date +%s) < deadline )) || die "node$n (pid $pid) still alive 10s after SIGKILL"
    sleep 0.05
done
rm -f "$(node_pidfile "$n")"
log "node$n killed (pid $pid, SIGKILL); its port $ADDRESS:$(http_port "$n") is now closed"
