#!/usr/bin/env bash
# Live instances one meshwa process can hold: the largest pool that fits the address space (with
# and without MPK, or MPK computed from wasmtime's layout where the CPU lacks `pku`), and the RSS,
# PSS and kernel mappings of each live instance, held by requests whose body never arrives.
#
# Each live instance takes about 4 kernel mappings, so 100,000 of them need vm.max_map_count
# far above Linux's default of 65530. Run as root, this script raises it to 4194304 for the
# machine (until reboot) and says so; otherwise it measures within the current limit.
#
# Usage: bench/density.sh [INSTANCES=100000] [MAX_MEMORY=64MiB]
set -euo pipefail
cd "$(dirname "$0")/.."

INSTANCES=${1:-100000}
MAX_MEMORY=${2:-64MiB}
# shellcheck source=bench/lib.sh
. bench/lib.sh
raise_max_map_count
cargo build --release --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # builds target/guests/.../echo.wasm
# error: the pool probe builds engines too large on purpose, and each would warn.
RUST_LOG=error target/release/meshwa-bench density \
    --component target/guests/wasm32-wasip2/release/echo.wasm \
    --instances "$INSTANCES" --max-memory "$MAX_MEMORY"
