#!/usr/bin/env bash
# What Spin's request headers cost per request: the same spin-sdk component (guests/spin-front,
# its `/spin/hello/:name` route) served from a spin.toml (Spin's seven headers set on every
# request) and from a meshwa.toml (none), each by a fresh release server, alternating, under
# wrk; prints requests/s and p50 of each round and the medians.
#
# Usage: bench/spin-headers.sh [ROUNDS=3] [DURATION=5s] [CONNECTIONS=16]
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
COMPONENT=$PWD/target/guests/wasm32-wasip2/release/spin_front.wasm
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/spin.toml" <<TOML
spin_manifest_version = 2
[application]
name = "bench"
[[trigger.http]]
route = "/spin/..."
component = "front"
[component.front]
source = "$COMPONENT"
key_value_stores = ["default"]
TOML
cat > "$WORK/meshwa.toml" <<TOML
tenant = "local"
app = "bench"
[[functions]]
name = "front"
component = "$COMPONENT"
route = "/spin"
grants = { key-value = ["default"] }
[key-value.default]
TOML

run() { # manifest → "req/s p50_ms" of a fresh server
    local data="$WORK/data-$RANDOM"
    target/release/meshwa serve "$1" --listen 127.0.0.1:18180 --admin-listen 127.0.0.1:18181 \
        --data-dir "$data" >"$WORK/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18180/spin/hello/x && break; sleep 0.1; done
    curl -sf -o /dev/null 127.0.0.1:18180/spin/hello/x || { cat "$WORK/serve.log" >&2; exit 1; }
    wrk_point http://127.0.0.1:18180/spin/hello/ada "$CONNECTIONS" "$DURATION"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "| round | spin.toml (headers) req/s | p50 ms | meshwa.toml (none) req/s | p50 ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
declare -a spin_rps plain_rps
for round in $(seq "$ROUNDS"); do
    read -r s_rps s_p50 < <(run "$WORK/spin.toml")
    read -r m_rps m_p50 < <(run "$WORK/meshwa.toml")
    spin_rps+=("$s_rps"); plain_rps+=("$m_rps")
    echo "| $round | $s_rps | $s_p50 | $m_rps | $m_p50 |"
done
s=$(median "${spin_rps[@]}"); m=$(median "${plain_rps[@]}")
echo
echo "median req/s: spin.toml $s, meshwa.toml $m; ratio $(awk -v s="$s" -v m="$m" 'BEGIN {printf "%.3f", s/m}')"
