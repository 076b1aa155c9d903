# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Shared by start.sh, stop.sh and kill-node.sh (sourced, not run).
#
# Knobs (environment):
#   LIMPET_TOMCAT_DIR           where the three CATALINA_BASEs live (default /tmp/limpet-tomcat;
#                               the scripts' DIR argument wins)
#   LIMPET_TOMCAT_HOME          CATALINA_HOME (default /usr/share/tomcat10, Debian's tomcat10)
#   LIMPET_TOMCAT_ADDRESS       address every port binds to (default 127.0.0.1)
#   LIMPET_TOMCAT_HTTP_BASE     node N's HTTP port is this + N (default 18080: 18081..18083)
#   LIMPET_TOMCAT_CLUSTER_BASE  node N's Tribes receiver port is this + N (default 14000: 14001..14003)
#   LIMPET_TOMCAT_SHUTDOWN_BASE node N's shutdown port is this + N (default: unset = port -1, disabled;
#                               the scripts stop nodes with signals)
#   LIMPET_TOMCAT_HTTP_PORTS, LIMPET_TOMCAT_CLUSTER_PORTS, LIMPET_TOMCAT_SHUTDOWN_PORTS
#                               node1..node3's ports one by one, e.g. "41234,41236,41238" (commas or
#                               spaces, one port per node); each list, when set, wins over its _BASE.
#                               For ports that are not base+N, e.g. free ones picked by a test.
#   LIMPET_TOMCAT_JAVA_OPTS     JVM options for every node (default: small heap, fast start, see below)
#   LIMPET_TOMCAT_SEND_OPTIONS  the Cluster's channelSendOptions (default 6 = synchronous ack:
#                               a response leaves only once the peers applied the change; 8 = async)
#   LIMPET_TOMCAT_START_TIMEOUT seconds start.sh waits for the nodes (default 180)
#   LIMPET_TOMCAT_STOP_TIMEOUT  seconds stop.sh waits before SIGKILL (default 30)

EXAMPLE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODES=(1 2 3)

TOMCAT_HOME="${LIMPET_TOMCAT_HOME:-/usr/share/tomcat10}"
ADDRESS="${LIMPET_TOMCAT_ADDRESS:-127.0.0.1}"
HTTP_BASE="${LIMPET_TOMCAT_HTTP_BASE:-18080}"
CLUSTER_BASE="${LIMPET_TOMCAT_CLUSTER_BASE:-14000}"
SHUTDOWN_BASE="${LIMPET_TOMCAT_SHUTDOWN_BASE:-}"
SEND_OPTIONS="${LIMPET_TOMCAT_SEND_OPTIONS:-6}"
START_TIMEOUT="${LIMPET_TOMCAT_START_TIMEOUT:-180}"
STOP_TIMEOUT="${LIMPET_TOMCAT_STOP_TIMEOUT:-30}"
# Small heap and a quick start: three of these fit a 2-core CI machine.
JAVA_OPTS_DEFAULT="-Xms32m -Xmx128m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
-XX:ReservedCodeCacheSize=48m -XX:MaxMetaspaceSize=128m -Djava.awt.headless=true \
-Djava.security.egd=file:/dev/./urandom"
NODE_JAVA_OPTS="${LIMPET_TOMCAT_JAVA_OPTS:-$JAVA_OPTS_DEFAULT}"

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*"; }

# port_list ARRAY VARNAME: splits $VARNAME ("p1,p2,p3" or "p1 p2 p3") into
# ARRAY, one port per node; ARRAY stays empty if the variable is unset or
# empty (the _BASE applies then).
port_list() {
    local -n out=$1
    local value="${!2:-}" p
    out=()
    [[ -n "$value" ]] || return 0
    IFS=', ' read -r -a out <<<"$value"
    (( ${#out[@]} == ${#NODES[@]} )) || die "$2 must name ${#NODES[@]} ports (one per node), not '$value'"
    for p in "${out[@]}"; do
        if ! [[ "$p" =~ ^[1-9][0-9]*$ ]] || (( p > 65535 )); then
            die "$2: '$p' is not a port number"
        fi
    done
}
port_list HTTP_PORTS LIMPET_TOMCAT_HTTP_PORTS
port_list CLUSTER_PORTS LIMPET_TOMCAT_CLUSTER_PORTS
port_list SHUTDOWN_PORTS LIMPET_TOMCAT_SHUTDOWN_PORTS

# set_dir [DIR]: BASE_DIR from the argument, else the environment, else the default.
set_dir() {
    BASE_DIR="${1:-${LIMPET_TOMCAT_DIR:-/tmp/limpet-tomcat}}"
    case "$BASE_DIR" in /*) ;; *) BASE_DIR="$PWD/$BASE_DIR" ;; esac
}

node_name()    { echo "node$1"; }
node_base()    { echo "$BASE_DIR/node$1"; }
node_pidfile() { echo "$BASE_DIR/node$1/tomcat.pid"; }
# Node N's ports: from the _PORTS list if there is one, else _BASE + N.
http_port() {
    if (( ${#HTTP_PORTS[@]} > 0 )); then echo "${HTTP_PORTS[$1 - 1]}"; else echo $((HTTP_BASE + $1)); fi
}
cluster_port() {
    if (( ${#CLUSTER_PORTS[@]} > 0 )); then echo "${CLUSTER_PORTS[$1 - 1]}"; else echo $((CLUSTER_BASE + $1)); fi
}
shutdown_port() {
    if (( ${#SHUTDOWN_PORTS[@]} > 0 )); then
        echo "${SHUTDOWN_PORTS[$1 - 1]}"
    elif [[ -n "$SHUTDOWN_BASE" ]]; then
        echo $((SHUTDOWN_BASE + $1))
    else
        echo -1
    fi
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# pid_alive PID: the process exists and is not a zombie (a killed JVM whose
# parent is init stays a zombie until init reaps it, which can take seconds).
pid_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != Z && "$state" != X ]]
}

# node_pid N: prints the pid of node N's JVM if it is running (pid file present,
# process alive, and its command line names this CATALINA_BASE, so a recycled
# pid never gets a signal meant for Tomcat); returns 1 otherwise.
node_pid() {
    local pidfile pid
    pidfile="$(node_pidfile "$1")"
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" ]] || return 1
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dcatalina.base=$(node_base "$1") " || return 1
    echo "$pid"
}

# http_head PORT PATH: one HTTP/1.0 GET with bash's /dev/tcp (no curl needed);
# prints the status line and the headers, nothing if there is no answer within 2 s.
http_head() (
    exec 2>/dev/null 3<>"/dev/tcp/$ADDRESS/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$2" "$ADDRESS" "$1" >&3
    while IFS= read -r -t 2 line <&3; do
        line="${line%$'\r'}"
        [[ -z "$line" ]] && break
        printf '%s\n' "$line"
    done
)

# port_open PORT: something accepts TCP connections on ADDRESS:PORT.
port_open() ( exec 2>/dev/null 3<>"/dev/tcp/$ADDRESS/$1" )

# header NAME: reads http_head output on stdin, prints that header's value.
header() {
    local want="${1,,}" name value
    while IFS=: read -r name value; do
        if [[ "${name,,}" == "$want" ]]; then
            value="${value#"${value%%[![:space:]]*}"}"
            echo "$value"
            return 0
        fi
    done
    return 1
}
