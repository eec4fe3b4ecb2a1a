#!/usr/bin/env bash
# The cost of running legacy and heavy-runtime code in meshwa, in one run:
#  - a compute-heavy C kernel (SHA-256, guests/c/sha256sum.c) compiled natively and run as a
#    process, against the same source compiled to a WASI core module and served as a meshwa CGI
#    function (a fresh instance per request; the digests must match);
#  - fresh-instance request latency of the Python and JavaScript hello functions against the
#    Rust one, where its time goes, and the memory one live instance of each holds.
# Prints Markdown tables.
#
# Usage: bench/languages.sh [MIB=64] [RUNS=7]
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${1:-64}
RUNS=${2:-7}
cargo xtask setup
cargo build --release --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # all guests, into target/guests
make --no-print-directory -C guests/c OUT="$PWD/target/guests/c" MESHWA_SDK="$PWD/sdk/c" \
    "$PWD/target/guests/c/c_sha256_native" >/dev/null
RUST_LOG=warn target/release/meshwa-bench languages \
    --rust target/guests/wasm32-wasip2/release/hello.wasm \
    --python target/guests/polyglot/python_hello.wasm \
    --js target/guests/polyglot/js_hello.wasm \
    --rust-echo target/guests/wasm32-wasip2/release/echo.wasm \
    --sha-wasm target/guests/c/c_sha256.wasm \
    --sha-native target/guests/c/c_sha256_native \
    --mib "$MIB" --runs "$RUNS" "${@:3}"
