#!/usr/bin/env bash
# Crash loop (docs/reliability.md): CYCLES (default 100) cycles of starting `meshwa serve`,
# concurrent key-value writers and deploys in flight, SIGKILL at a pseudo-random moment, and a
# restart that must lose no acknowledged write and load no half-written deployment. It is the
# test `crash_loop_loses_no_acknowledged_write_and_loads_no_half_deploy` (10 cycles in `cargo
# xtask test`) with more cycles; every server it starts listens on 127.0.0.1 and is killed by it.
#
# Usage: bench/crash-loop.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
MESHWA_CRASH_CYCLES=${1:-100} cargo test --quiet -p meshwa --test cli \
    crash_loop_loses_no_acknowledged_write_and_loads_no_half_deploy -- --nocapture 2>&1 |
    grep -E "cycles:|panicked|cycle [0-9]+|left|right|test result"
