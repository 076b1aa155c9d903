# The tls_* scenarios: one certificate for all three balancers, and what was
# negotiated, measured rather than assumed.
# Sourced by run.sh; reads TMP and HAPROXY_STATS_PORT.
# shellcheck shell=bash

TLS_CRT=$TMP/tls/lb.crt TLS_KEY=$TMP/tls/lb.key TLS_PEM=$TMP/tls/lb.pem

# One certificate for all three balancers: ECDSA P-256, self-signed for
# localhost and 127.0.0.1. limpet reads the chain and the (PKCS#8) key, nginx
# the same two files, HAProxy both in one PEM.
make_certificate() {
    mkdir -p "$TMP/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$TLS_KEY" -out "$TLS_CRT" >"$TMP/tls/openssl.log" 2>&1 ||
        die "openssl could not make the certificate: $(cat "$TMP/tls/openssl.log")"
    cat "$TLS_CRT" "$TLS_KEY" >"$TLS_PEM"
    chmod 600 "$TLS_KEY" "$TLS_PEM"   # limpet check warns about a key every user can read
}

# tls_probe ADDR: what an OpenSSL 3 client (as wrk) negotiates, and whether
# the balancer resumes a session, in one line.
tls_probe() {
    local addr=$1 out new kx alpn verify r13=no r12 sess=$TMP/tls/session.pem
    out=$(timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -verify_hostname "${addr%:*}" \
        -alpn h2,http/1.1 </dev/null 2>&1 || true)
    new=$(sed -n 's/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' <<<"$out" | head -1)
    if [[ -z $new || $new == *NONE* ]]; then
        echo "no handshake: $(grep -m1 -i -E 'error|errno|alert' <<<"$out" || echo "openssl s_client failed")"
        return 0
    fi
    kx=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -1)
    alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -1)
    verify=$(sed -n 's/^ *Verify return code: //p' <<<"$out" | head -1)
    [[ $verify == "0 (ok)" ]] && verify=verified
    # TLS 1.3: the tickets come after the handshake, so read a whole response
    # before saving the session, then offer it on a new connection.
    rm -f "$sess"
    printf 'GET /static/x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" |
        timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_3 -ign_eof -sess_out "$sess" >/dev/null 2>&1 || true
    if [[ -s $sess ]] && timeout 10 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_3 -sess_in "$sess" </dev/null 2>&1 |
        grep -q '^Reused, '; then
        r13=yes
    fi
    # TLS 1.2: the session id, 5 reconnections
    r12=$(timeout 20 openssl s_client -connect "$addr" -CAfile "$TLS_CRT" -tls1_2 -reconnect </dev/null 2>&1 |
        grep -c '^Reused, ' || true)
    echo "$new, $kx, ALPN ${alpn:-none} (offered h2,http/1.1), certificate ${verify:-not checked};" \
        "resumes a session: TLS 1.3 $r13, TLS 1.2 $r12/5"
}

haproxy_handshakes() { # "FULL RESUMED": TLS handshakes HAProxy's frontend counted so far
    ( (exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_STATS_PORT" && echo "show stat typed" >&3 &&
        timeout 5 cat <&3) 2>/dev/null || true) |
        awk -F'[.:]' '$1 == "F" && $5 == "ssl_sess" { f += $NF } $1 == "F" && $5 == "ssl_reused_sess" { r += $NF }
            END { print f + 0, r + 0 }'
}
