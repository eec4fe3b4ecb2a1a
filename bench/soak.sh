#!/usr/bin/env bash
# Soak (docs/reliability.md): the example apps, in-process chains, key-value writes, a redeploy a
# minute and a few faulty requests, at 80 % of the measured peak for SECONDS (default 1800),
# sampling the server's RSS, open descriptors, live instances and latency every 10 s. Fails if
# any of them drifts upward or a good request fails. The server it starts listens on 127.0.0.1
# and is killed by it; the traffic is bounded by SECONDS.
#
# Usage: bench/soak.sh [SECONDS=1800] [extra meshwa-bench soak flags, e.g. --load 0.5]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_SOAK=${1:-1800}
shift || true
cargo xtask build-examples
cargo build --release --quiet --package meshwa --package meshwa-bench
guests=target/guests/wasm32-wasip2/release
manifests=()
for manifest in examples/*/meshwa.toml; do
    manifests+=(--manifest "$manifest")
done
# The table goes to stdout; the server's warnings (the faulty requests' among them) to a log.
LOG=target/soak-server.log
echo "server log: $LOG" >&2
if ! RUST_LOG=error target/release/meshwa-bench soak --seconds "$SECONDS_TO_SOAK" \
    --meshwa target/release/meshwa "${manifests[@]}" --secrets-file examples/secrets.toml \
    --hello "$guests/hello.wasm" --faults "$guests/faults.wasm" "$@" 2>"$LOG"; then
    grep -v 'meshwa::guest\|faults' "$LOG" | tail -20 >&2
    exit 1
fi
