#!/usr/bin/env bash
# drill.sh [--lb URL] [--victim N] [--hops K] [DIR] — the failover drill,
# scripted with curl and a cookie jar, against the nodes of start.sh [DIR]
# (all three must be up). Prints PASS/FAIL lines, exits 1 on any failure,
# and leaves all three nodes running (the killed one is restarted by start.sh).
#
# Without --lb it talks to the nodes directly and checks Tomcat itself:
#   a session made on node N stays there; every request hopping node1 ->
#   node2 -> node3 -> ... sees the previous request's counter (synchronous
#   replication); after SIGKILL of node N a survivor continues the counter
#   and re-suffixes the id (.nodeM); node N, restarted, gets the session back.
# With --lb URL (e.g. http://127.0.0.1:18080, limpet with lb.yaml) it checks
# the balancer: stickiness to the node named in JSESSIONID, failover to a
# survivor with the counter intact, stickiness to the new node afterwards,
# and routing on ;jsessionid= in the URL when there is no cookie.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

LB=""
VICTIM=""
HOPS=30
DIR_ARG=""
while (( $# > 0 )); do
    case "$1" in
        --lb) LB="${2:?--lb needs a URL}"; LB="${LB%/}"; shift 2 ;;
        --victim) VICTIM="${2:?--victim needs 1, 2 or 3}"; shift 2 ;;
        --hops) HOPS="${2:?--hops needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) DIR_ARG="$1"; shift ;;
    esac
done
set_dir "$DIR_ARG"
command -v curl >/dev/null || die "curl is needed for the drill: apt-get install -y curl"
[[ -z "$VICTIM" || "$VICTIM" =~ ^[1-3]$ ]] || die "--victim must be 1, 2 or 3"
[[ "$HOPS" =~ ^[0-9]+$ ]] || die "--hops must be a number"
for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null || die "node$n of $BASE_DIR is not running: run start.sh $BASE_DIR first"
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
check() {   # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then
        passed=$((passed + 1)); echo "PASS  $what"
    else
        failed=$((failed + 1)); echo "FAIL  $what"
    fi
}

# req URL JAR: one GET with the cookie jar; sets R_STATUS R_SERVER R_SESSION
# R_COUNTER R_COOKIE (the JSESSIONID in Set-Cookie, empty if none) R_MS.
req() {
    local url=$1 jar=$2 out body last
    R_STATUS="" R_SERVER="" R_SESSION="" R_COUNTER="" R_COOKIE="" R_MS=""
    out="$(curl -sS -m 10 -c "$jar" -b "$jar" -D "$TMP/headers" \
        -w '\n%{http_code} %{time_total}' "$url" 2>"$TMP/curl.err")" || {
        R_STATUS="curl: $(tr -d '\n' <"$TMP/curl.err")"; return 0; }
    last="${out##*$'\n'}"
    body="${out%$'\n'*}"
    R_STATUS="${last%% *}"
    R_MS="$(awk -v s="${last#* }" 'BEGIN { printf "%.1f", s * 1000 }')"
    if [[ "$body" =~ \"server\":\"([^\"]*)\",\"session\":\"([^\"]*)\",\"counter\":([0-9]+) ]]; then
        R_SERVER="${BASH_REMATCH[1]}" R_SESSION="${BASH_REMATCH[2]}" R_COUNTER="${BASH_REMATCH[3]}"
    fi
    R_COOKIE="$(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Ss]et-[Cc]ookie: *JSESSIONID=\([^;]*\).*/\1/p' | tail -n 1)"
}
show() { printf '      %-34s -> %s %s counter=%s session=%s set-cookie=%s (%s ms)\n' \
    "$1" "$R_STATUS" "$R_SERVER" "$R_COUNTER" "$R_SESSION" "${R_COOKIE:--}" "$R_MS"; }
node_url() { echo "http://$ADDRESS:$(http_port "$1")"; }
others() { local n; for n in "${NODES[@]}"; do [[ "$n" == "$1" ]] || echo "$n"; done; }
hex() { echo "${1%%.*}"; }

drill_direct() {
    local v=${VICTIM:-1} jar="$TMP/jar" i
    local survivors; mapfile -t survivors < <(others "$v")
    local m=${survivors[0]} m2=${survivors[1]}
    echo "== direct: session on node$v, kill node$v, continue on node$m and node$m2"

    req "$(node_url "$v")/cart" "$jar"; show "new session at node$v"
    check "node$v creates the session, JSESSIONID=<hex>.node$v" \
        test "$R_STATUS" = 200 -a "$R_COUNTER" = 1 -a "$R_COOKIE" = "$R_SESSION" -a "${R_COOKIE##*.}" = "node$v"
    local sid=$R_SESSION
    for i in 2 3 4; do
        req "$(node_url "$v")/cart" "$jar"; show "same cookie at node$v"
        check "node$v counts $i, no new cookie" test "$R_COUNTER" = "$i" -a "$R_SESSION" = "$sid" -a -z "$R_COOKIE"
    done

    # Hop test on its own session: each request goes to the next node, so
    # each one reads what the previous node wrote just before answering.
    if (( HOPS > 0 )); then
        local hjar="$TMP/hopjar" lost=0 badid=0 total=0 node hsid="" prev=0
        for ((i = 1; i <= HOPS; i++)); do
            node=${NODES[$(( (i - 1) % ${#NODES[@]} ))]}
            req "$(node_url "$node")/hop" "$hjar"
            [[ -z "$hsid" ]] && hsid="$(hex "$R_SESSION")"
            total="$(awk -v a="$total" -v b="$R_MS" 'BEGIN { print a + b }')"
            if [[ "$R_COUNTER" != "$((prev + 1))" ]]; then
                lost=$((lost + 1)); show "hop $i at node$node: expected $((prev + 1))"
            fi
            if [[ "$R_SESSION" != "$hsid.node$node" ]]; then
                badid=$((badid + 1)); show "hop $i at node$node: id not .node$node"
            fi
            prev=${R_COUNTER:-$prev}
        done
        echo "      $HOPS requests hopping node1->node2->node3->..., mean $(awk -v t="$total" -v n="$HOPS" 'BEGIN { printf "%.1f", t / n }') ms each, $lost saw a stale counter"
        check "every hop continues the previous node's counter (replicated before the response)" test "$lost" = 0
        check "every hop re-suffixes the same id with the serving node's route" test "$badid" = 0
    fi

    local t0; t0=$(now_ms)
    "$EXAMPLE_DIR/kill-node.sh" "$v" "$BASE_DIR" | sed 's/^/      /'
    req "$(node_url "$m")/cart" "$jar"; show "old cookie .node$v at node$m"
    check "node$m continues the counter (5) after node$v died" test "$R_STATUS" = 200 -a "$R_COUNTER" = 5
    check "node$m re-suffixes the same id: Set-Cookie JSESSIONID=$(hex "$sid").node$m" \
        test "$R_COOKIE" = "$(hex "$sid").node$m" -a "$R_SESSION" = "$R_COOKIE"
    echo "      failover answered $(( $(now_ms) - t0 )) ms after the SIGKILL"
    req "$(node_url "$m")/cart" "$jar"; show "new cookie .node$m at node$m"
    check "node$m keeps counting (6), no new cookie" test "$R_COUNTER" = 6 -a -z "$R_COOKIE"
    req "$(node_url "$m2")/cart" "$jar"; show "cookie .node$m at node$m2"
    check "node$m2 has the re-suffixed session too (7)" test "$R_COUNTER" = 7 -a "$R_COOKIE" = "$(hex "$sid").node$m2"

    echo "      restarting node$v (start.sh)"
    "$EXAMPLE_DIR/start.sh" "$BASE_DIR" >"$TMP/start.log" 2>&1 || { cat "$TMP/start.log"; die "start.sh failed"; }
    req "$(node_url "$v")/cart" "$jar"; show "cookie .node$m2 at restarted node$v"
    check "restarted node$v got the session from a peer (8) and re-suffixes it .node$v" \
        test "$R_COUNTER" = 8 -a "$R_COOKIE" = "$(hex "$sid").node$v"
}

drill_lb() {
    local jar="$TMP/jar" i s m sid c
    echo "== through the balancer at $LB"
    req "$LB/cart" "$jar"; show "new session via LB"
    check "the balancer returns a new session (counter 1, Set-Cookie .<route>)" \
        test "$R_STATUS" = 200 -a "$R_COUNTER" = 1 -a -n "$R_COOKIE" -a "$R_SESSION" = "$R_COOKIE"
    s="${R_SERVER#node}"; sid=$R_SESSION
    [[ "$s" =~ ^[1-3]$ ]] || die "unexpected server '$R_SERVER' in the body"
    [[ -n "$VICTIM" && "$VICTIM" != "$s" ]] && echo "      (--victim ignored: the session lives on node$s)"
    for i in 2 3 4 5 6; do
        req "$LB/cart" "$jar"; show "same cookie via LB"
        check "sticky: request $i served by node$s (counter $i), no new cookie" \
            test "$R_SERVER" = "node$s" -a "$R_COUNTER" = "$i" -a -z "$R_COOKIE"
    done

    local t0; t0=$(now_ms)
    "$EXAMPLE_DIR/kill-node.sh" "$s" "$BASE_DIR" | sed 's/^/      /'
    req "$LB/cart" "$jar"; show "cookie .node$s via LB, node$s dead"
    check "failover: 200 from a survivor, counter continues (7)" \
        test "$R_STATUS" = 200 -a "$R_COUNTER" = 7 -a "$R_SERVER" != "node$s" -a -n "$R_SERVER"
    m="${R_SERVER#node}"
    check "the survivor re-suffixes the id: Set-Cookie JSESSIONID=$(hex "$sid").node$m" \
        test "$R_COOKIE" = "$(hex "$sid").node$m"
    echo "      failover answered $(( $(now_ms) - t0 )) ms after the SIGKILL"
    c=7
    for i in 1 2 3; do
        c=$((c + 1))
        req "$LB/cart" "$jar"; show "cookie .node$m via LB"
        check "sticky to the new node node$m (counter $c)" test "$R_SERVER" = "node$m" -a "$R_COUNTER" = "$c" -a -z "$R_COOKIE"
    done

    # URL rewriting: no cookie, the id in ;jsessionid= (mod_jk/mod_proxy_balancer's "|jsessionid").
    c=$((c + 1))
    req "$LB/cart;jsessionid=$(hex "$sid").node$m" "$TMP/emptyjar"; show ";jsessionid=...node$m, no cookie"
    check "routes on ;jsessionid= to node$m (counter $c)" test "$R_SERVER" = "node$m" -a "$R_COUNTER" = "$c"

    echo "      restarting node$s (start.sh)"
    "$EXAMPLE_DIR/start.sh" "$BASE_DIR" >"$TMP/start.log" 2>&1 || { cat "$TMP/start.log"; die "start.sh failed"; }
    c=$((c + 1))
    req "$LB/cart" "$jar"; show "cookie .node$m via LB, node$s back"
    check "no bounce back: still node$m after node$s returned (counter $c)" \
        test "$R_SERVER" = "node$m" -a "$R_COUNTER" = "$c"
}

if [[ -n "$LB" ]]; then drill_lb; else drill_direct; fi
echo
echo "drill: $passed passed, $failed failed"
(( failed == 0 ))
