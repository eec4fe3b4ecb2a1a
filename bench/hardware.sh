#!/usr/bin/env bash
# The hardware report (issue 21): builds what it measures, runs `meshwa-bench hardware`, and
# writes docs/hardware.md with its chart (docs/hardware-bounds.svg). Extra flags go to the
# command (`--quick` for a short run that only checks every section produces rows; `--out
# PATH` to write elsewhere).
#
# A pool without guard regions takes about two kernel mappings per memory slot, so Linux's
# default vm.max_map_count (65530) would bind the bounds-checked rows before the address space
# does: run as root, this script raises it to 4194304 (until reboot), as bench/density.sh does,
# and says so; otherwise the report shows the limit it measured under.
#
# Usage: bench/hardware.sh [FLAGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
raise_max_map_count
cargo xtask setup
cargo build --release --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # all guests, into target/guests
G=target/guests
RUST_LOG=warn target/release/meshwa-bench hardware \
    --hello "$G/wasm32-wasip2/release/hello.wasm" \
    --sha "$G/c/c_sha256.wasm" \
    --table "$G/wasm32-wasip2/release/preinit.wasm" \
    --large "$G/polyglot/python_hello.wasm" \
    --checkout bench/tax/meshwa.toml \
    --hopper "$G/wasm32-wasip2/release/hopper.wasm" --sink "$G/wasm32-wasip2/release/sink.wasm" \
    --typed-hopper "$G/wasm32-wasip2/release/typed_hopper.wasm" \
    --typed-sink "$G/wasm32-wasip2/release/typed_sink.wasm" \
    --cache-dir target/hardware-cache \
    "$@"
