#!/usr/bin/env bash
# HTTP throughput and latency of a hello function under wrk, in one run:
#   meshwa serve (fresh instance per request)
#   wasmtime serve, pooling allocator (fresh instance per request)
#   wasmtime serve, instance reuse
#   a native hyper hello server (the ceiling)
# Installs what it needs (wrk from Debian, wasmtime-cli from crates.io, cached under
# ~/.cache/meshwa-bench), starts and stops every server itself, prints a Markdown table.
#
# With TRACES=1, meshwa instead, four times: traces off, exported at 100 % and at 1 % (to a
# stand-in collector, `meshwa-bench otlp-sink`), and off again. BASELINE=/path/to/old/meshwa
# adds that binary (traces off) first and last, for an A/B against an earlier build.
#
# Usage: [TRACES=1] bench/http.sh [DURATION=10s] [CONNECTIONS=50] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-50}
THREADS=${3:-2}
# shellcheck source=bench/wasmtime.sh
. bench/wasmtime.sh

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# The trace rows run meshwa only.
if [ "${TRACES:-0}" != 1 ]; then ensure_wasmtime; fi

cargo build --release --package meshwa --package meshwa-bench --quiet
cargo build --package meshwa-test-programs --quiet   # builds target/guests/.../hello.wasm
MESHWA=target/release/meshwa
MESHWA_BENCH=target/release/meshwa-bench
HELLO=target/guests/wasm32-wasip2/release/hello.wasm

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # url
    for _ in $(seq 1 200); do
        if curl -fs -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "server at $1 did not come up" >&2
    return 1
}

cat > "$WORK/meshwa.toml" <<TOML
tenant = "bench"
app = "hello"
[[functions]]
name = "hello"
component = "$PWD/$HELLO"
route = "/"
TOML

ROWS=()
run_wrk() { # name url
    local name=$1 url=$2 out
    wait_ready "$url"
    wrk -t1 -c4 -d2s "$url" >/dev/null   # warm-up
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url")
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    ROWS+=("$name|$rps|$p50|$p99|${errors:-none}")
}

start() { # name, command...; the command gets the port as its last argument; sets URL
    local name=$1 port
    shift
    port=$(free_port)
    URL="http://127.0.0.1:$port/"
    "$@" "$port" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}

# meshwa logs one line per invocation at the default level, as in production (the log writer
# runs on its own thread); stderr goes to a file.
# `exec`: the background job's PID is then the server's own, so `kill` reaches it.
serve_meshwa() { local port=$1; shift; exec "$MESHWA" serve "$WORK/meshwa.toml" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" "$@"; }
serve_wasmtime_pooling() { exec "$WASMTIME" serve -Scli -O pooling-allocator=y --addr "127.0.0.1:$1" "$HELLO"; }
serve_wasmtime_reuse() { exec "$WASMTIME" serve -Scli -O pooling-allocator=y --max-instance-reuse-count 1000000 --addr "127.0.0.1:$1" "$HELLO"; }
serve_native() { exec "$MESHWA_BENCH" native-hello --listen "127.0.0.1:$1"; }
serve_sink() { exec "$MESHWA_BENCH" otlp-sink --listen "127.0.0.1:$1"; }
serve_meshwa_traces_100() { serve_meshwa "$1" --otlp-endpoint "$SINK/v1/traces" --trace-sample 1; }
serve_meshwa_traces_1() { serve_meshwa "$1" --otlp-endpoint "$SINK/v1/traces" --trace-sample 0.01; }
serve_baseline() { MESHWA=$BASELINE serve_meshwa "$1"; }

SERVERS=(meshwa wasmtime_pooling wasmtime_reuse native)
if [ "${TRACES:-0}" = 1 ]; then
    start sink serve_sink
    SINK=${URL%/}
    SERVERS=(meshwa meshwa_traces_100 meshwa_traces_1 meshwa)
    if [ -n "${BASELINE:-}" ]; then SERVERS=(baseline "${SERVERS[@]}" baseline); fi
fi
for server in "${SERVERS[@]}"; do
    start "$server" "serve_$server"
    run_wrk "$server" "$URL"
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
done

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, hello function, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| server | requests/s | p50 | p99 | errors |"
echo "| --- | --- | --- | --- | --- |"
for row in "${ROWS[@]}"; do
    IFS='|' read -r name rps p50 p99 errors <<<"$row"
    echo "| $name | $rps | $p50 | $p99 | $errors |"
done
