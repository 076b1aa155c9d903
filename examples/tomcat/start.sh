#!/usr/bin/env bash
# start.sh [DIR] — build (idempotently) and start three Tomcat 10 nodes that
# replicate sessions with DeltaManager over static Tribes membership, each
# with its own jvmRoute (node1..node3), for limpet's jvm_route sticky mode.
#
# DIR (default /tmp/limpet-tomcat) gets one CATALINA_BASE per node:
#   DIR/nodeN/{conf,logs,temp,work,webapps/ROOT}, DIR/nodeN/tomcat.pid
# CATALINA_HOME is Debian's /usr/share/tomcat10 (apt-get install tomcat10).
# A node that is already running is left alone; the others are (re)built and
# started. Returns once every node answers /health and sees its two peers.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac
set_dir "${1:-}"

# --- prerequisites ----------------------------------------------------------
[[ -x "$TOMCAT_HOME/bin/catalina.sh" ]] \
    || die "$TOMCAT_HOME/bin/catalina.sh not found: apt-get install -y tomcat10 (or set LIMPET_TOMCAT_HOME)"
[[ -e "$TOMCAT_HOME/lib/catalina-ha.jar" ]] || die "$TOMCAT_HOME/lib/catalina-ha.jar missing (clustering jars)"

# Debian keeps the stock config in $CATALINA_HOME/etc (upstream: conf).
STOCK_CONF="$TOMCAT_HOME/etc"
[[ -r "$STOCK_CONF/web.xml" ]] || STOCK_CONF="$TOMCAT_HOME/conf"
[[ -r "$STOCK_CONF/web.xml" ]] || die "no stock web.xml in $TOMCAT_HOME/etc or $TOMCAT_HOME/conf"

if [[ -z "${JAVA_HOME:-}" ]]; then
    if [[ -r /usr/libexec/tomcat10/tomcat-locate-java.sh ]]; then
        # Debian's own lookup, as the tomcat10 service uses it.
        JAVA_HOME="$( (. /usr/libexec/tomcat10/tomcat-locate-java.sh >/dev/null 2>&1 && echo "$JAVA_HOME") || true)"
    fi
    if [[ -z "${JAVA_HOME:-}" ]] && command -v java >/dev/null; then
        JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
    fi
fi
[[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] \
    || die "no Java runtime found: apt-get install -y default-jre-headless (or set JAVA_HOME)"
export JAVA_HOME

[[ "$SEND_OPTIONS" =~ ^[0-9]+$ ]] || die "LIMPET_TOMCAT_SEND_OPTIONS must be a number (6 = sync ack, 8 = async)"
mkdir -p "$BASE_DIR"

# --- build one CATALINA_BASE ------------------------------------------------
members_xml() {   # the static <Member> entries for node $1's peers
    local self=$1 n
    for n in "${NODES[@]}"; do
        [[ "$n" == "$self" ]] && continue
        cat <<EOF
            <Member className="org.apache.catalina.tribes.membership.StaticMember"
                    host="$ADDRESS" port="$(cluster_port "$n")" domain="limpet-example"
                    uniqueId="$(unique_id "$n")"/>  <!-- node$n -->
EOF
    done
}
unique_id() { echo "{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,$1}"; }   # 16 bytes, one per node

build_node() {
    local n=$1 base members
    base="$(node_base "$n")"
    mkdir -p "$base"/{conf,logs,temp,work,webapps}
    members="$(members_xml "$n")"
    # server.xml from the template (bash substitution: no sed quoting issues).
    local xml
    xml="$(<"$EXAMPLE_DIR/conf/server.xml.in")"
    xml="${xml//@NODE@/$(node_name "$n")}"
    xml="${xml//@ADDRESS@/$ADDRESS}"
    xml="${xml//@HTTP_PORT@/$(http_port "$n")}"
    xml="${xml//@CLUSTER_PORT@/$(cluster_port "$n")}"
    xml="${xml//@SHUTDOWN_PORT@/$(shutdown_port "$n")}"
    xml="${xml//@UNIQUE_ID@/$(unique_id "$n")}"
    xml="${xml//@SEND_OPTIONS@/$SEND_OPTIONS}"
    xml="${xml//@MEMBERS@/$members}"
    printf '%s\n' "$xml" >"$base/conf/server.xml.tmp"
    mv "$base/conf/server.xml.tmp" "$base/conf/server.xml"
    cp "$EXAMPLE_DIR/conf/context.xml" "$EXAMPLE_DIR/conf/logging.properties" "$base/conf/"
    cp "$STOCK_CONF/web.xml" "$base/conf/web.xml"
    if [[ -r "$STOCK_CONF/catalina.properties" ]]; then
        cp "$STOCK_CONF/catalina.properties" "$base/conf/catalina.properties"
    fi
    # The webapp: fresh copy; Jasper compiles its JSPs into work/ at start-up.
    rm -rf "$base/webapps/ROOT" "$base/work/Catalina"
    cp -R "$EXAMPLE_DIR/webapp" "$base/webapps/ROOT"
}

check_ports_free() {   # node $1's ports must be free before it starts
    local port ports=("$(http_port "$1")" "$(cluster_port "$1")")
    [[ "$(shutdown_port "$1")" == -1 ]] || ports+=("$(shutdown_port "$1")")
    for port in "${ports[@]}"; do
        if port_open "$port"; then
            die "$ADDRESS:$port is already in use by something that is not node$1 of $BASE_DIR (another DIR's nodes? stop.sh that DIR first)"
        fi
    done
}

start_node() {
    local n=$1 base
    base="$(node_base "$n")"
    rm -f "$(node_pidfile "$n")"
    : >"$base/logs/catalina.out"
    # setsid: the JVM must not die with this shell's session/terminal.
    env CATALINA_HOME="$TOMCAT_HOME" CATALINA_BASE="$base" \
        CATALINA_TMPDIR="$base/temp" CATALINA_PID="$(node_pidfile "$n")" \
        CATALINA_OUT="$base/logs/catalina.out" JAVA_HOME="$JAVA_HOME" \
        CATALINA_OPTS="$NODE_JAVA_OPTS -Dlimpet.node=$(node_name "$n")" \
        setsid "$TOMCAT_HOME/bin/catalina.sh" start </dev/null >"$base/logs/launcher.log" 2>&1 \
        || { cat "$base/logs/launcher.log" >&2; die "catalina.sh start failed for node$n"; }
}

# --- start what is not running, one node at a time ----------------------------
# One at a time on purpose: a DeltaManager that starts while a peer is itself
# still fetching the session state drops the peer's "get all sessions"
# request, and that peer then stalls for stateTransferTimeout (seen here with
# a parallel start: 30 s instead of 3). Each node is started in the background
# and polled until it answers /health, then the next one starts.
wait_healthy() {   # wait_healthy N: poll node N's /health until 200 or the deadline
    local n=$1 status
    while :; do
        if ! node_pid "$n" >/dev/null; then
            echo "--- $(node_base "$n")/logs/catalina.out (last 40 lines) ---" >&2
            tail -n 40 "$(node_base "$n")/logs/catalina.out" >&2 || true
            die "node$n is not running"
        fi
        status="$(http_head "$(http_port "$n")" /health | head -n 1 || true)"
        [[ "$status" == "HTTP/1."?" 200"* ]] && return 0
        if (( $(date +%s) >= deadline )); then
            die "node$n not healthy within ${START_TIMEOUT}s (see $(node_base "$n")/logs/catalina.out)"
        fi
        sleep 0.1
    done
}

# Ports first, for every node to start, so a clash starts nothing.
for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null || check_ports_free "$n"
done

t0=$(now_ms)
deadline=$(( $(date +%s) + START_TIMEOUT ))
for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then
        log "node$n already running (pid $pid), left alone"
        wait_healthy "$n"
        continue
    fi
    t1=$(now_ms)
    build_node "$n"
    start_node "$n"
    log "node$n starting (pid $(node_pid "$n" || echo '?'), http $ADDRESS:$(http_port "$n"), cluster $ADDRESS:$(cluster_port "$n"))"
    wait_healthy "$n"
    log "node$n answers /health after $(( $(now_ms) - t1 )) ms"
done

# --- wait: every node sees the other two (static membership formed) ------------
want=$(( ${#NODES[@]} - 1 ))
while :; do
    pending=0
    seen=""
    for n in "${NODES[@]}"; do
        m="$(http_head "$(http_port "$n")" /health | header X-Cluster-Members || true)"
        seen+=" node$n=${m:-?}"
        [[ "$m" == "$want" ]] || pending=$((pending + 1))
    done
    (( pending == 0 )) && break
    if (( $(date +%s) >= deadline )); then
        die "cluster did not form within ${START_TIMEOUT}s (members seen:$seen; see $BASE_DIR/node*/logs/catalina.out)"
    fi
    sleep 0.2
done
log "cluster formed: every node sees its $want peers (after $(( $(now_ms) - t0 )) ms)"

echo
printf '%-6s %-22s %-22s %-8s %s\n' NODE HTTP CLUSTER PID CATALINA_BASE
for n in "${NODES[@]}"; do
    printf '%-6s %-22s %-22s %-8s %s\n' "node$n" "$ADDRESS:$(http_port "$n")" \
        "$ADDRESS:$(cluster_port "$n")" "$(node_pid "$n")" "$(node_base "$n")"
done
echo
echo "limpet in front:  cargo run --release -- --config $EXAMPLE_DIR/lb.yaml   (listens on 127.0.0.1:18080)"
echo "stop:             $EXAMPLE_DIR/stop.sh $BASE_DIR"
