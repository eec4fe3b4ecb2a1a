#!/usr/bin/env bash
# What a cluster costs (issue 19): key-value latency from inside a guest on the embedded redb
# store and on NATS JetStream with 1 and 3 replicas, each against a native async-nats client on
# the same bucket in the same run; then deploy convergence over three `meshwa serve --cluster`
# nodes on three NATS servers. Starts and stops every server itself (Debian's nats-server,
# installed if missing). Prints Markdown tables.
#
# Usage: bench/cluster.sh [ITERATIONS=1000] [DEPLOYS=10]
set -euo pipefail
cd "$(dirname "$0")/.."

ITERATIONS=${1:-1000}
DEPLOYS=${2:-10}
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
