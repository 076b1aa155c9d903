# What each scenario sends, where its requests must go, and who runs it.
# Sourced by run.sh and report.sh; reads SCENARIOS, BALANCERS, LB_PORT and
# LB_ADDR, and (run.sh only) JSESSIONID and HIT_ID.
# shellcheck shell=bash disable=SC2034  # read by run.sh and report.sh

ALL_SCENARIOS="baseline round_robin cookie jvm_route ip_hash learn_hit learn_new tls_keepalive tls_handshake"
NGINX_SKIP="open-source nginx cannot learn a session id from a response (that is nginx Plus \`sticky learn\`)"

scenario_mode() { # the affinity a scenario configures: templates/*/*-<mode>.*
    case $1 in
        round_robin | tls_*) echo none ;;
        cookie | jvm_route | ip_hash) echo "$1" ;;
        learn_hit | learn_new) echo learn ;;
        *) die "scenario $1 runs no balancer" ;;
    esac
}
scenario_path() { # the request of the scenario
    case $1 in
        learn_new) echo / ;;          # a session path: every cookie-less request creates a session
        *) echo /static/x ;;          # never creates or reads a session
    esac
}
scenario_header() { # scenario → request header for wrk/curl
    case $1 in
        baseline | round_robin | ip_hash | learn_new | tls_keepalive) echo "" ;;
        tls_handshake) echo "Connection: close" ;;   # a new connection and TLS handshake per request
        cookie) echo "Cookie: SERVERID=node2" ;;
        jvm_route) echo "Cookie: JSESSIONID=$JSESSIONID" ;;
        learn_hit) echo "Cookie: JSESSIONID=$HIT_ID" ;;
    esac
}
scenario_scheme() { # how clients speak to the balancer
    case $1 in
        tls_*) echo https ;;
        *) echo http ;;
    esac
}
balancer_target() { # scenario → host:port clients use for the balancer
    # Over TLS by name, as clients do: wrk sends the URL's host as SNI, and
    # an IP address there is not allowed (RFC 6066; rustls logs a warning
    # for each). localhost resolves to 127.0.0.1; the certificate names it.
    case $1 in
        tls_*) echo "localhost:$LB_PORT" ;;
        *) echo "$LB_ADDR" ;;
    esac
}
scenario_expect() { # which node(s) the requests should reach
    case $1 in
        round_robin | learn_new | tls_*) echo "node1+node2+node3" ;;
        ip_hash) echo "one node, always the same" ;;
        *) echo "node2" ;;
    esac
}
scenario_balancers() { # who runs in a scenario, in the order of round 1
    local b who=()
    case $1 in
        baseline)
            who=(direct)
            # learn_new's request costs the node more (a new session each):
            # its own direct baseline
            [[ " $SCENARIOS " == *" learn_new "* ]] && who+=(direct_new)
            ;;
        learn_hit | learn_new)
            for b in $BALANCERS; do [[ $b == nginx ]] || who+=("$b"); done
            ;;
        *) read -r -a who <<<"$BALANCERS" ;;
    esac
    echo "${who[*]}"
}

# routing_ok SCENARIO NODE... : did the requests go where the scenario says?
routing_ok() {
    local scenario=$1
    shift
    local distinct
    distinct=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
    distinct=${distinct% }
    case $scenario in
        round_robin | learn_new | tls_*) [[ $distinct == "node1 node2 node3" ]] ;;
        ip_hash) [[ $distinct =~ ^node[0-9]+$ ]] ;;
        *) [[ $distinct == node2 ]] ;;
    esac
}
