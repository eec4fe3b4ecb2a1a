#!/usr/bin/env bash
# What pre-initialization buys a function with start-up work: guests/preinit (a 200,000-entry
# table built before it answers) served twice by one release server, pre-initialized (`table`:
# the table is in the snapshot) and not (`table-off`, `pre-initialize = false`: every fresh
# instance builds it), alternating under wrk; prints requests/s and p50 of each round and the
# medians.
#
# Usage: bench/preinit.sh [ROUNDS=3] [DURATION=5s] [CONNECTIONS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-5s}
CONNECTIONS=${3:-16}
# shellcheck source=bench/lib.sh
. bench/lib.sh
ensure_wrk
cargo build -q --release -p meshwa
cargo build -q -p meshwa-test-programs # builds the guests
COMPONENT=$PWD/target/guests/wasm32-wasip2/release/preinit.wasm
WORK=$(mktemp -d)
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/meshwa.toml" <<TOML
tenant = "bench"
app = "preinit"
[[functions]]
name = "table"
component = "$COMPONENT"
route = "/bench/table"
[[functions]]
name = "table-off"
component = "$COMPONENT"
route = "/bench/table-off"
pre-initialize = false
TOML
target/release/meshwa serve "$WORK/meshwa.toml" --listen 127.0.0.1:18190 \
    --admin-listen 127.0.0.1:18191 --data-dir "$WORK/data" --cache-dir "$WORK/cache" \
    >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18190/bench/table && break; sleep 0.1; done
curl -sf 127.0.0.1:18190/bench/table >/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
grep -o 'pre-initialized: snapshot taken.*' "$WORK/serve.log" | head -1 >&2 || true

measure() { wrk_point "http://127.0.0.1:18190$1" "$CONNECTIONS" "$DURATION"; }

echo "| round | pre-initialized req/s | p50 ms | not (pre-initialize = false) req/s | p50 ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
declare -a on off
for round in $(seq "$ROUNDS"); do
    read -r on_rps on_p50 < <(measure /bench/table)
    read -r off_rps off_p50 < <(measure /bench/table-off)
    on+=("$on_rps"); off+=("$off_rps")
    echo "| $round | $on_rps | $on_p50 | $off_rps | $off_p50 |"
done
a=$(median "${on[@]}"); b=$(median "${off[@]}")
echo
echo "median req/s: pre-initialized $a, not $b; ratio $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}')"
