# The processes run.sh starts (demo nodes, balancers, samplers), their ports,
# and stopping every one of them on exit, also on failure or Ctrl-C.
# Sourced by run.sh; reads here, TMP, RESULTS, REPORTED, PORT_BASE, NODES,
# NODES_BIN.
# shellcheck shell=bash disable=SC2154,SC2153  # globals set by run.sh

PIDS=()        # every process this script started (killed on exit)
SAMPLER_PID=
NODES_PID=

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
    cap_cleanup
    if [[ ${KEEP_TMP:-0} == 1 || $rc -ne 0 ]]; then
        log "run.sh: configs, logs and raw wrk output kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    # stopped before the report: what was measured is in RESULTS all the same
    if [[ -z $REPORTED && -s ${RESULTS:-} ]] && grep -q '"kind":"run"' "$RESULTS"; then
        log "run.sh: the runs measured so far are in $RESULTS; \`$here/report.sh $RESULTS\` makes their table"
    fi
    exit "$rc"
}

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
