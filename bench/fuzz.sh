#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (fuzz/fuzz_targets/TARGET.rs) for SECONDS with libFuzzer
# (cargo-fuzz on a nightly toolchain; both installed here on first use) and prints libFuzzer's
# final statistics. New inputs go to target/fuzz-corpus/TARGET, seeded from fuzz/corpus/TARGET
# (which stays small: only seeds and regressions are committed). An input that makes the target
# fail is written to fuzz/artifacts/TARGET/: copy it into fuzz/corpus/TARGET, where the crate's
# corpus test runs it in every `cargo xtask test`, and fix the parser.
#
# Usage: bench/fuzz.sh TARGET [SECONDS]     targets: ls fuzz/fuzz_targets
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: bench/fuzz.sh TARGET [SECONDS]}
RUN_SECONDS=${2:-600}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "target/fuzz-corpus/$TARGET"
# `platform` and `admin` load guest components that crates/test-programs builds.
case $TARGET in
    platform | admin) cargo build -q -p meshwa-test-programs ;;
esac
cd fuzz
cargo +nightly fuzz run "$TARGET" "../target/fuzz-corpus/$TARGET" "corpus/$TARGET" -- \
    -max_total_time="$RUN_SECONDS" -print_final_stats=1 -close_fd_mask=3 2>&1 |
    grep -E "^(#[0-9]+\s+DONE|stat::|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
ls "artifacts/$TARGET" 2>/dev/null | sed 's/^/failing input: fuzz\/artifacts\/'"$TARGET"'\//' || true
