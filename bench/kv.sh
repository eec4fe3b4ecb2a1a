#!/usr/bin/env bash
# Key-value latency from inside a guest (wasi:keyvalue on meshwa's embedded redb store) against a
# native Rust client of a local redis-server over loopback, in one run. Installs redis-server
# from Debian if missing; `meshwa-bench kv` starts Redis itself (appendonly, appendfsync always,
# in a temporary directory) and stops it when done. Prints a Markdown table.
#
# Usage: bench/kv.sh [ITERATIONS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."

ITERATIONS=${1:-2000}
if ! command -v redis-server >/dev/null; then
    echo "installing redis-server" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
cargo build --release --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # builds target/guests/.../services.wasm
RUST_LOG=warn target/release/meshwa-bench kv \
    --component target/guests/wasm32-wasip2/release/services.wasm \
    --iterations "$ITERATIONS" --redis-server "$(command -v redis-server)"
