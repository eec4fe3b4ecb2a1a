#!/usr/bin/env bash
# What a cluster costs (issue 19): key-value latency from inside a guest on the embedded redb
# store and on NATS JetStream with 1 and 3 replicas, each against a native async-nats client on
# the same bucket in the same run; then deploy convergence over three `meshwa serve --cluster`
# nodes on three NATS servers; then requests/s of the example hello function on one node alone,
# on one node of a cluster, and on the three nodes of the cluster together (one wrk each, summed)
# on this machine. Starts and stops every server itself (Debian's nats-server and wrk, installed
# if missing). Prints Markdown tables.
#
# Usage: bench/cluster.sh [ITERATIONS=1000] [DEPLOYS=10] [DURATION=10s]
set -euo pipefail
cd "$(dirname "$0")/.."

ITERATIONS=${1:-1000}
DEPLOYS=${2:-10}
DURATION=${3:-10s}
source bench/lib.sh
if ! command -v nats-server >/dev/null; then
    echo "installing nats-server" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nats-server >/dev/null
fi
cargo build --release --package meshwa --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # builds the guests and the examples
RUST_LOG=warn target/release/meshwa-bench cluster \
    --component target/guests/wasm32-wasip2/release/services.wasm \
    --app examples/acme-greeter \
    --iterations "$ITERATIONS" --deploys "$DEPLOYS"

# 3. Requests/s, one node vs three (the same machine: the point is overhead, not speed-up).
ensure_wrk
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
base=$((24000 + RANDOM % 4000))
routes=""
for i in 0 1 2; do routes+="${routes:+,}nats://127.0.0.1:$((base + 100 + i))"; done
for i in 0 1 2; do
    nats-server -a 127.0.0.1 -p $((base + i)) --name "n$i" --js --store_dir "$work/nats-$i" \
        --cluster_name bench --cluster "nats://127.0.0.1:$((base + 100 + i))" --routes "$routes" \
        >/dev/null 2>&1 &
    pids+=($!)
done
sleep 3
serve() {  # PORT [FLAGS...]: a release node serving acme-greeter on PORT
    local port=$1; shift
    RUST_LOG=warn target/release/meshwa serve examples/acme-greeter/meshwa.toml \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" \
        --data-dir "$work/node-$port" "$@" >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/acme/hello" >/dev/null && return; sleep 0.1; done
    echo "node on $port did not start" >&2; exit 1
}
alone=$((base + 200))
serve $alone
read -r alone_rps alone_p50 < <(wrk_point "http://127.0.0.1:$alone/acme/hello" 16 "$DURATION")
kill "${pids[-1]}"
for i in 0 1 2; do serve $((base + 300 + 10 * i)) --cluster "nats://127.0.0.1:$((base + i))"; done
read -r one_rps one_p50 < <(wrk_point "http://127.0.0.1:$((base + 300))/acme/hello" 16 "$DURATION")
together() {  # DURATION OUT-PREFIX: one wrk per node at once, waited for
    local loads=()
    for i in 0 1 2; do
        wrk -t1 -c6 -d"$1" "http://127.0.0.1:$((base + 300 + 10 * i))/acme/hello" > "$2-$i" &
        loads+=($!)
    done
    wait "${loads[@]}"
}
together 2s "$work/warm"
together "$DURATION" "$work/wrk"
three_rps=$(awk '/Requests\/sec/ {s += $2} END {printf "%.0f", s}' "$work"/wrk-*)
echo
echo "requests/s of acme/hello (wrk, 16 connections in all, $DURATION), $(nproc) cores shared by every process"
echo
echo "| deployment | req/s | p50 ms |"
echo "| --- | ---: | ---: |"
echo "| one node, alone | $alone_rps | $alone_p50 |"
echo "| one node of a 3-node cluster | $one_rps | $one_p50 |"
echo "| the 3 nodes of the cluster together (3 wrk × 6 connections) | $three_rps | |"
