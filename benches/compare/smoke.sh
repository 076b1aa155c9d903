#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A short end-to-end check of the side-by-side benchmark, for CI: run.sh
# measures every balancer for a few seconds, once paced (RATE, through
# templates/pace.lua) and once not, and this script checks what it wrote:
#
#   * the paced runs were offered RATE req/s and carried it (within 10 %),
#     with no error, no misrouted request and every balancer measured;
#   * the unpaced run reports a rate and no pace;
#   * the report names the pace, and run.sh refuses a bad RATE;
#   * report.sh, given a committed results file, prints the medians and
#     p99 ranges its runs add up to.
#
# No figure of speed is checked: the numbers of a 2-second run on a shared
# CI machine say nothing. Installs what run.sh needs (as root, with apt-get).
#
#   benches/compare/smoke.sh          # about a minute after the release build
#   SMOKE_KEEP=1 benches/compare/smoke.sh   # keep its reports and logs (the path is printed)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d); [[ -n ${SMOKE_KEEP:-} ]] && echo "smoke: keeping $tmp"
trap '[[ -n ${SMOKE_KEEP:-} ]] || rm -rf "$tmp"' EXIT

fail() { printf 'smoke: %s\n' "$*" >&2; exit 1; }

RATE=2000
export ROUNDS=1 WARMUP=1s DURATION=2s SYSCALLS_DURATION=1s ALLOW_DIRTY=1 \
    PORT_BASE=${PORT_BASE:-24000}

# --- paced: every balancer is offered RATE req/s ---------------------------
RATE=$RATE SCENARIOS="baseline cookie learn_new" BALANCERS="limpet haproxy nginx" \
    OUT="$tmp/paced.md" "$here/run.sh" >"$tmp/paced.log" 2>&1 ||
    { cat "$tmp/paced.log" >&2; fail "the paced run failed (its output is above)"; }
runs=$tmp/paced.jsonl
[[ -s $runs ]] || fail "the paced run wrote no results"

jq -se --argjson rate "$RATE" 'map(select(.kind == "setup"))[0].pace.rate == $rate' "$runs" >/dev/null ||
    fail "the setup line does not record pace.rate = $RATE"
# baseline's two, cookie's three, learn_new's two (nginx cannot learn)
want="direct direct_new haproxy haproxy limpet limpet nginx"
got=$(jq -r 'select(.kind == "run") | .balancer' "$runs" | sort | xargs)
[[ $got == "$want" ]] || fail "measured runs: \`$got\`, expected \`$want\`"
bad=$(jq -r --argjson rate "$RATE" 'select(.kind == "run")
    | select(.rps < $rate * 0.9 or .rps > $rate * 1.1 or .non2xx != 0
             or .socket_errors != 0 or (.problems | length) != 0)
    | "\(.scenario)/\(.balancer): \(.rps) req/s, \(.non2xx) non-2xx, \(.socket_errors) socket errors, problems: \(.problems)"' "$runs")
[[ -z $bad ]] || fail "paced runs off their rate or with errors:"$'\n'"$bad"
grep -qF "**paced**" "$tmp/paced.md" || fail "the report does not say the runs were paced"
grep -q "RATE=$RATE" "$tmp/paced.md" || fail "the report does not name RATE=$RATE"
# the main table: every row has the header's cells (nginx's "not run" rows too)
ragged=$(awk -F'|' '/^\| scenario \| balancer \| req\/s/ { on = 1; n = NF; next }
    on && !/^\|/ { exit } on && NF != n { print }' "$tmp/paced.md")
[[ -z $ragged ]] || fail "rows of the report's table with the wrong number of cells:"$'\n'"$ragged"
# one round: no p99 range
grep -qE '^\| cookie \| limpet \| [0-9]+ \|.*\| [0-9.]+ \| - \| [0-9.]+ \|' "$tmp/paced.md" ||
    fail "the cookie/limpet row of a one-round report does not show '-' as its p99 range"

# --- unpaced: as fast as the load side goes --------------------------------
SCENARIOS="cookie" BALANCERS="limpet" SYSCALLS=0 \
    OUT="$tmp/unpaced.md" "$here/run.sh" >"$tmp/unpaced.log" 2>&1 ||
    { cat "$tmp/unpaced.log" >&2; fail "the unpaced run failed (its output is above)"; }
jq -se 'map(select(.kind == "setup"))[0] | has("pace") and .pace == null' "$tmp/unpaced.jsonl" >/dev/null ||
    fail "the unpaced run's setup line records a pace"
jq -se 'map(select(.kind == "run")) | length == 1 and all(.rps > 0 and .non2xx == 0 and .socket_errors == 0)' \
    "$tmp/unpaced.jsonl" >/dev/null || fail "the unpaced run measured nothing, or saw errors"
if grep -qF "**paced**" "$tmp/unpaced.md"; then fail "the unpaced report says it was paced"; fi

# --- the report of a committed results file ----------------------------------
# cookie/limpet's seven p99s there: 2.63 2.74 1.55 1.45 2.28 6.86 2.33 ms;
# p50s: 0.712 0.634 0.561 0.499 0.689 1.12 0.725
row=$("$here/report.sh" "$here/results-2026-12-06-amd-aa.jsonl" | grep -F '| cookie | limpet |' | head -n 1)
[[ $row == "| cookie | limpet | 19976 | 1.00 | - | 0.689 | 2.33 | 1.45–6.86 | 23.1 |"* ]] ||
    fail "report.sh's cookie/limpet row of results-2026-12-06-amd-aa.jsonl: \`$row\`"

# --- bad input ---------------------------------------------------------------
for rate in 0 abc 1.5; do
    if RATE=$rate OUT="$tmp/bad.md" "$here/run.sh" >"$tmp/bad.log" 2>&1; then
        fail "run.sh accepted RATE=$rate"
    fi
    grep -q "RATE must be" "$tmp/bad.log" || fail "RATE=$rate: no clear message: $(cat "$tmp/bad.log")"
done

echo "smoke: benches/compare ran paced (RATE=$RATE) and unpaced; reports and results check out"
