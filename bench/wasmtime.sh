# Sourced by the bench scripts that compare with `wasmtime serve`: sets WASMTIME to the
# wasmtime-cli of the version meshwa is built on (unless the caller set it), and
# `ensure_wasmtime` installs it from crates.io into ~/.cache/meshwa-bench when it is missing.
WASMTIME_VERSION=48.0.8   # newest wasmtime that builds with the pinned toolchain
MESHWA_BENCH_CACHE=${MESHWA_BENCH_CACHE:-$HOME/.cache/meshwa-bench}
WASMTIME=${WASMTIME:-$MESHWA_BENCH_CACHE/wasmtime-$WASMTIME_VERSION/bin/wasmtime}

ensure_wasmtime() {
    [ -x "$WASMTIME" ] && return 0
    echo "installing wasmtime-cli $WASMTIME_VERSION (about 15 minutes, once)" >&2
    # A persistent target directory lets an interrupted install resume.
    CARGO_TARGET_DIR="$MESHWA_BENCH_CACHE/target" cargo install wasmtime-cli \
        --version "$WASMTIME_VERSION" --locked \
        --root "$MESHWA_BENCH_CACHE/wasmtime-$WASMTIME_VERSION" >&2
}
