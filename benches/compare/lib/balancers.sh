# The balancers under test: their configurations, made from templates/, and
# starting, asking and priming them.
# Sourced by run.sh; reads here, TMP, WORKERS, MAXCONN, PORT_BASE, LB_ADDR,
# LB_PORT, ADMIN_ADDR, HAPROXY_STATS_PORT, TLS_CRT, TLS_KEY, TLS_PEM,
# LIMPET_BIN, LIMPET_B and ON_LB_CPUS.
# shellcheck shell=bash disable=SC2154,SC2034  # globals shared with run.sh and lib/scenarios.sh

SCRAPE_URL=    # the running balancer's metrics, scraped every second
HIT_ID=        # learn_hit: the id the balancer under test learned from node2 (per run)
LB_PID=

# render TEMPLATE [NAME=VALUE]...: templates/TEMPLATE with every {{NAME}}
# replaced by VALUE, the settings below included. A line that is only a
# {{NAME}} whose VALUE is empty is left out; a {{NAME}} without a value is
# an error.
render() {
    local file=$here/templates/$1 kv vars=()
    shift
    [[ -f $file ]] || die "no template $file"
    for kv in SCENARIO="${SCENARIO:-}" WORKERS="$WORKERS" MAXCONN="$MAXCONN" TMP="$TMP" \
        LB_ADDR="$LB_ADDR" ADMIN_ADDR="$ADMIN_ADDR" HAPROXY_STATS_PORT="$HAPROXY_STATS_PORT" \
        NODE1_PORT=$((PORT_BASE + 1)) NODE2_PORT=$((PORT_BASE + 2)) NODE3_PORT=$((PORT_BASE + 3)) \
        TLS_CRT="$TLS_CRT" TLS_KEY="$TLS_KEY" TLS_PEM="$TLS_PEM" "$@"; do
        vars+=("T_$kv")
    done
    # The values travel in the environment (as T_NAME): no quoting to get wrong.
    # shellcheck disable=SC2016  # an awk program
    env "${vars[@]}" awk '
        {
            line = $0; out = ""
            while (match(line, /[{][{][A-Z0-9_]+[}][}]/)) {
                name = substr(line, RSTART + 2, RLENGTH - 4)
                if (!(("T_" name) in ENVIRON)) {
                    printf "%s:%d: no value for {{%s}}\n", FILENAME, FNR, name > "/dev/stderr"
                    exit 2
                }
                out = out substr(line, 1, RSTART - 1) ENVIRON["T_" name]
                line = substr(line, RSTART + RLENGTH)
            }
            out = out line
            if (out == "" && $0 != "") next
            print out
        }' "$file" || die "could not fill in $file"
}

tls_suffix() { # scenario → the file name part of its listener: http or tls
    case $1 in
        tls_*) echo tls ;;
        *) echo http ;;
    esac
}

# The configurations: one template per balancer, with the parts that differ
# between scenarios in files of their own, named by the scenario's mode
# (scenario_mode) and by http or tls. Each part is filled in on its own
# line, so that a template that cannot be filled in stops the script.

limpet_config() { # scenario → lb.yaml
    local SCENARIO=$1 mode tls listener sticky
    mode=$(scenario_mode "$1")
    tls=$(tls_suffix "$1")
    listener=$(render "limpet/listener-$tls.yaml")
    sticky=$(render "limpet/sticky-$mode.yaml")
    render limpet/lb.yaml LISTENER="$listener" STICKY="$sticky"
}

haproxy_config() { # scenario → haproxy.cfg
    local SCENARIO=$1 mode tls global_tls='' frontend backend
    mode=$(scenario_mode "$1")
    tls=$(tls_suffix "$1")
    if [[ $tls == tls ]]; then global_tls=$(render haproxy/global-tls.cfg); fi
    frontend=$(render "haproxy/frontend-$tls.cfg")
    backend=$(render "haproxy/backend-$mode.cfg")
    render haproxy/haproxy.cfg GLOBAL_TLS="$global_tls" FRONTEND="$frontend" BACKEND="$backend"
}

# shellcheck disable=SC2016  # $names below are nginx variables
nginx_config() { # scenario → nginx.conf
    local SCENARIO=$1 mode upstream listen
    mode=$(scenario_mode "$1")
    case $mode in # which of the upstreams in templates/nginx/nginx.conf
        none) upstream=app ;;
        cookie) upstream='$by_serverid' ;;
        jvm_route) upstream='$by_jvm_route' ;;
        ip_hash) upstream=app_ip_hash ;;
        *) die "nginx has no configuration for scenario $1" ;;
    esac
    listen=$(render "nginx/listen-$(tls_suffix "$1").conf")
    # nginx closes an upstream connection once `keepalive` others are idle:
    # it must be able to keep one per wrk connection, as limpet and HAProxy do.
    render nginx/nginx.conf UPSTREAM="$upstream" LISTEN="$listen" \
        RLIMIT_NOFILE=$((4 * MAXCONN)) WORKER_CONNECTIONS=$((2 * MAXCONN)) \
        KEEPALIVE=$((CONNECTIONS > 64 ? CONNECTIONS : 64))
}

start_balancer() { # start_balancer NAME SCENARIO → sets LB_PID
    local name=$1 scenario=$2 conf
    SCRAPE_URL=
    wait_port_free "$LB_PORT"
    wait_port_free $((PORT_BASE + 90))
    case $name in
        limpet | limpet_b)   # limpet_b: the same configuration, the binary LIMPET_B
            local bin=$LIMPET_BIN
            [[ $name == limpet_b ]] && bin=$LIMPET_B
            conf=$TMP/lb-$scenario.yaml
            limpet_config "$scenario" >"$conf"
            mkdir -p "$TMP/limpet-state"
            "$bin" check --config "$conf" >"$TMP/$name-check.log" 2>&1 ||
                die "$name rejected $conf: $(cat "$TMP/$name-check.log")"
            "${ON_LB_CPUS[@]}" "$bin" --config "$conf" >"$TMP/$name-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
        haproxy)
            wait_port_free "$HAPROXY_STATS_PORT"
            conf=$TMP/haproxy-$scenario.cfg
            haproxy_config "$scenario" >"$conf"
            haproxy -c -q -f "$conf" >"$TMP/haproxy-check.log" 2>&1 ||
                die "haproxy rejected $conf: $(cat "$TMP/haproxy-check.log")"
            # -db: foreground, no master process: one process with nbthread threads
            "${ON_LB_CPUS[@]}" haproxy -db -f "$conf" >"$TMP/haproxy-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
        nginx)
            conf=$TMP/nginx-$scenario.conf
            nginx_config "$scenario" >"$conf"
            mkdir -p "$TMP/nginx-tmp"
            nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-check.log" 2>&1 ||
                die "nginx rejected $conf: $(cat "$TMP/nginx-check.log")"
            # daemon off: the master stays in the foreground, so $! is the master
            "${ON_LB_CPUS[@]}" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$conf" >"$TMP/nginx-$scenario.log" 2>&1 &
            LB_PID=$!
            ;;
    esac
    PIDS+=("$LB_PID")
    # Every balancer's metrics are scraped alike: limpet's /metrics, HAProxy's
    # Prometheus exporter, nginx's stub_status, all on ADMIN_ADDR.
    SCRAPE_URL="http://$ADMIN_ADDR/metrics"
    wait_http "$(scenario_scheme "$scenario")://$(balancer_target "$scenario")/static/ready" "$LB_PID" "$name"
    wait_http "$SCRAPE_URL" "$LB_PID" "$name metrics endpoint"
}

learned_sessions() { # learned_sessions NAME: entries in the balancer's learned table now
    local n=
    case $1 in
        limpet | limpet_b)
            n=$(curl -s --max-time 5 "http://$ADMIN_ADDR/metrics" |
                awk '/^limpet_learned_sessions[ {]/ { s += $NF; found = 1 } END { if (found) print s }' || true)
            ;;
        haproxy)
            # "# table: app, type: string, size:1048576, used:123"
            n=$( (exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_STATS_PORT" && echo "show table" >&3 &&
                timeout 5 cat <&3) 2>/dev/null | sed -n 's/^# table: app,.*used:\([0-9]*\).*/\1/p' || true)
            ;;
    esac
    echo "${n:-?}"
}

prime_learn() { # prime_learn TARGET: a session node2 issues through the balancer → HIT_ID
    local hdrs node id
    HIT_ID=
    for _ in $(seq 12); do
        hdrs=$(curl -s -D - -o /dev/null --max-time 5 "http://$1/" | tr -d '\r' || true)
        node=$(awk -F': ' 'tolower($1)=="x-demo-node"{print $2}' <<<"$hdrs")
        id=$(sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' <<<"$hdrs" | head -1)
        if [[ $node == node2 && -n $id ]]; then
            HIT_ID=$id
            return 0
        fi
    done
    die "no session from node2 through $1 in 12 requests"
}
