#!/usr/bin/env bash
# The infrastructure tax, measured: one checkout application (bench/tax/logic, written once),
# its deployments, one table.
#   (a) monolith: one native process, the services as function calls;
#   (b) 6 native services (gateway, auth, cart, pricing, inventory, render: one process each,
#       HTTP/1.1 keep-alive and JSON between them, pricing and inventory called concurrently);
#   (a') meshwa, the whole checkout in one sandboxed instance (what the sandbox costs);
#   (c) meshwa, the same services as functions calling each other with `invoke` and host-owned
#       buffers (guests/tax-shop, bench/tax/meshwa.toml);
#   (d) meshwa, the same functions chaining with in-process wasi:http requests;
#   (f) meshwa, the services as WIT interfaces the gateway imports, composed into one component
#       at load (typed calls: guests/tax-shop-typed, tax-shop-services, bench/tax/meshwa-typed.toml);
#   (f') meshwa, the same typed calls host-linked: each call runs the service in a fresh instance
#       of its own (bench/tax/meshwa-typed-host.toml);
#   (e) one `wasmtime serve` per service (the same component), chained over loopback HTTP.
# The store: every deployment reads the same dataset from an in-process store (a map natively,
# meshwa's embedded store, wasmtime's in-memory wasi:keyvalue), so that the table shows the cost
# of splitting, not of a network store; with REDIS=1, (a) and (b) are measured again reading a
# local Redis over loopback. Checks that every deployment answers byte-identical receipts, then
# measures each: latency at a fixed moderate rate (open loop), max throughput (closed loop),
# CPU time per request of all its processes. Prints a Markdown table and (unless SMOKE=1)
# writes it into docs/benchmarks.md. Everything listens on 127.0.0.1; every process started here
# is stopped on exit, error or Ctrl-C, and stops by itself after a while anyway.
#
# Usage: bench/tax/run.sh
# Environment: RATE=200 (req/s), DURATION=10 (s per measurement), CONNECTIONS=16 (for max),
#   CHECKED=32 (requests compared), REDIS=1 (0: no Redis rows), SMOKE=0 (1: a short run of
#   every deployment but Redis and wasmtime, the bench smoke check run by hand: nothing written), EXPLAIN=0
#   (1: then where each hop's time goes, from a server run with `--explain`), MESHWA_BIN and
#   MESHWA_BENCH_BIN (default: release builds), WASMTIME (default: wasmtime-cli 48.0.8,
#   installed once into ~/.cache/meshwa-bench like bench/http.sh does, about 15 minutes).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

SMOKE=${SMOKE:-0}
EXPLAIN=${EXPLAIN:-0}
if [ "$SMOKE" = 1 ]; then
    RATE=${RATE:-50} DURATION=${DURATION:-1} CONNECTIONS=${CONNECTIONS:-4} CHECKED=${CHECKED:-8}
    REDIS=0
fi
RATE=${RATE:-100}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
CHECKED=${CHECKED:-32}
REDIS=${REDIS:-1}
TIME_LIMIT=480   # seconds for the whole run once built; the servers exit by themselves after
LIFETIME=540     # this many seconds even if this script is killed without a chance to clean up
# shellcheck source=bench/wasmtime.sh
. "$REPO/bench/wasmtime.sh"

if [ "$REDIS" = 1 ] && ! command -v redis-server >/dev/null; then
    echo "installing redis-server" >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
[ "$SMOKE" = 1 ] || ensure_wasmtime
# Both sides are built with more inlining than LLVM's default, as the meshwa SDK recommends for
# functions (a call costs more in wasm: Cranelift's call sequence and an epoch check; measured
# in docs/benchmarks.md, "More inlining"): the guests' logic gains about 12 %, the native 5 %.
INLINE='"-C", "llvm-args=-inline-threshold=1000"'
(cd "$HERE" && CARGO_TARGET_DIR=${TAX_TARGET_DIR:-$REPO/target/tax} cargo build --release --quiet \
    --config "build.rustflags = [$INLINE]")
BIN=${TAX_TARGET_DIR:-$REPO/target/tax}/release/tax-native
# The meshwa side: the functions' component (the guests workspace, as the test build does) and
# the server.
# Built with the `release-lto` profile, as the native side (bench/tax/Cargo.toml); the manifest
# used is a copy of meshwa.toml pointing at that build.
(cd "$REPO/guests" && cargo build --profile release-lto --quiet --target wasm32-wasip2 \
    --config "target.wasm32-wasip2.rustflags = [$INLINE]" \
    --target-dir "$REPO/target/guests" --package tax-shop --package tax-shop-services \
    --package tax-shop-typed --package tax-logic-cost)
BUILT=$REPO/target/guests/wasm32-wasip2/release-lto
SHOP_COMPONENT=$BUILT/tax_shop.wasm
# For `wasmtime serve`, the same code without the invoke style (which imports meshwa:platform).
if [ "$SMOKE" != 1 ]; then
    (cd "$REPO/guests" && cargo build --profile release-lto --quiet --target wasm32-wasip2 \
        --config "target.wasm32-wasip2.rustflags = [$INLINE]" \
        --target-dir "$REPO/target/guests-wasi" --package tax-shop --no-default-features)
fi
COMPONENT=$REPO/target/guests-wasi/wasm32-wasip2/release-lto/tax_shop.wasm
if [ -z "${MESHWA_BIN:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet --package meshwa)
    MESHWA_BIN=$REPO/target/release/meshwa
fi
# The logic alone in the sandbox (with and without the engine's epoch checks), beside the native
# `logic-cost`.
if [ -z "${MESHWA_BENCH_BIN:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet --package meshwa-bench)
    MESHWA_BENCH_BIN=$REPO/target/release/meshwa-bench
fi

# Other work on the machine skews every number: say how busy it was.
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d)
PIDS=()
for manifest in meshwa.toml meshwa-typed.toml meshwa-typed-host.toml; do
    sed "s|\"../../target/guests/wasm32-wasip2/release/|\"$BUILT/|" "$HERE/$manifest" >"$WORK/$manifest"
    grep -q "$BUILT" "$WORK/$manifest" || { echo "bench/tax/$manifest: component paths not found" >&2; exit 1; }
done
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated (time limit of ${TIME_LIMIT} s?)" >&2; exit 143' TERM

# The whole run is bounded: past the limit, the script terminates itself (and so cleans up).
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$TIME_LIMIT" & sleeper=$!
    wait "$sleeper" && kill -TERM $$
) &
PIDS+=($!)

# Distinct free ports, all taken at once.
read -r -a PORTS <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(24)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
next_port() { PORT=${PORTS[0]}; PORTS=("${PORTS[@]:1}"); }

fail() {
    echo "FAILED: $*" >&2
    for log in "$WORK"/*.log; do
        [ -s "$log" ] && { echo "--- $(basename "$log")" >&2; tail -n 5 "$log" >&2; }
    done
    exit 1
}

wait_ready() { # URL
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    fail "$1 not ready"
}

if [ "$REDIS" = 1 ]; then
    # Redis: no persistence, in the scratch directory, killed on exit.
    next_port
    REDIS_PORT=$PORT
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no \
        --dir "$WORK" --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do "$BIN" preload --redis "$REDIS_URL" 2>"$WORK/preload.log" && break; sleep 0.1; done
    grep -q preloaded "$WORK/preload.log" || fail "preload"
fi

declare -A URL DEPLOYMENT_PIDS

start() { # DEPLOYMENT NAME ARGS... (a tax-native server)
    local deployment=$1 name=$2
    shift 2
    "$BIN" "$@" --exit-after "$LIFETIME" 2>"$WORK/$deployment-$name.log" &
    PIDS+=($!)
    DEPLOYMENT_PIDS[$deployment]+=" $!"
}

deploy() { # KV-LABEL STORE-ARGS...: a monolith and the 6 services
    local kv=$1
    shift
    next_port
    start "monolith-$kv" monolith monolith --listen "127.0.0.1:$PORT" "$@"
    URL[monolith-$kv]=http://127.0.0.1:$PORT/checkout
    local next=()
    for service in auth cart pricing inventory render; do
        next_port
        start "services-$kv" "$service" service "$service" --listen "127.0.0.1:$PORT" "$@"
        next+=(--next "$service=http://127.0.0.1:$PORT/")
    done
    next_port
    start "services-$kv" gateway service gateway --listen "127.0.0.1:$PORT" "${next[@]}"
    URL[services-$kv]=http://127.0.0.1:$PORT/checkout
}

DEPLOYMENTS=(monolith-memory services-memory)
deploy memory --memory-kv
if [ "$REDIS" = 1 ]; then
    DEPLOYMENTS+=(monolith-redis services-redis)
    deploy redis --redis "$REDIS_URL"
fi
for deployment in "${DEPLOYMENTS[@]}"; do
    wait_ready "${URL[$deployment]%/checkout}/health"
done

# (c) and (d): one meshwa server with the app; its store is loaded through the app.
next_port
MESHWA_PORT=$PORT
next_port
timeout "$LIFETIME" "$MESHWA_BIN" serve "$WORK/meshwa.toml" "$WORK/meshwa-typed.toml" "$WORK/meshwa-typed-host.toml" --listen "127.0.0.1:$MESHWA_PORT" \
    --admin-listen "127.0.0.1:$PORT" --data-dir "$WORK/meshwa" 2>"$WORK/meshwa.log" >&2 &
MESHWA_PID=$!
PIDS+=("$MESHWA_PID")
for _ in $(seq 1 300); do
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$MESHWA_PORT/shop/load" && break
    sleep 0.1
done
curl -fs -o /dev/null -X POST "http://127.0.0.1:$MESHWA_PORT/shop/load" || fail "meshwa did not start"
curl -fs -o /dev/null -X POST "http://127.0.0.1:$MESHWA_PORT/shop-typed/load" || fail "meshwa: /shop-typed/load"
curl -fs -o /dev/null -X POST "http://127.0.0.1:$MESHWA_PORT/shop-host/load" || fail "meshwa: /shop-host/load"
DEPLOYMENTS+=(meshwa-local meshwa-invoke meshwa-http meshwa-typed meshwa-typed-host)
URL[meshwa-typed]=http://127.0.0.1:$MESHWA_PORT/shop-typed/checkout/typed
URL[meshwa-typed-host]=http://127.0.0.1:$MESHWA_PORT/shop-host/checkout/typed
URL[meshwa-local]=http://127.0.0.1:$MESHWA_PORT/shop/checkout/local
URL[meshwa-invoke]=http://127.0.0.1:$MESHWA_PORT/shop/checkout/invoke
URL[meshwa-http]=http://127.0.0.1:$MESHWA_PORT/shop/checkout/http
DEPLOYMENT_PIDS[meshwa-invoke]=" $(pgrep -P "$MESHWA_PID" || echo "$MESHWA_PID")"
DEPLOYMENT_PIDS[meshwa-http]=${DEPLOYMENT_PIDS[meshwa-invoke]}
DEPLOYMENT_PIDS[meshwa-local]=${DEPLOYMENT_PIDS[meshwa-invoke]}
DEPLOYMENT_PIDS[meshwa-typed]=${DEPLOYMENT_PIDS[meshwa-invoke]}
DEPLOYMENT_PIDS[meshwa-typed-host]=${DEPLOYMENT_PIDS[meshwa-invoke]}

# (e): one `wasmtime serve` per service, the same component, its in-memory store preset with
# the dataset; the gateway finds the others through TAX_<SERVICE>_URL.
if [ "$SMOKE" != 1 ]; then
    mapfile -t RECORDS < <("$BIN" dataset --hex)
    KV_ARGS=()
    for record in "${RECORDS[@]}"; do KV_ARGS+=(-S "keyvalue-in-memory-data=$record"); done
    wasmtime_serve() { # NAME PORT ENV...
        local name=$1 port=$2
        shift 2
        timeout "$LIFETIME" "$WASMTIME" serve -Scli -Skeyvalue "${KV_ARGS[@]}" \
            -O pooling-allocator=y --env TAX_KV_STORE= --env TAX_KV_HEX=1 "$@" --addr "127.0.0.1:$port" \
            "$COMPONENT" 2>"$WORK/wasmtime-$name.log" >&2 &
        PIDS+=($!)
        DEPLOYMENT_PIDS[wasmtime]+=" $!"
    }
    GATEWAY_ENV=()
    for service in auth cart pricing inventory render; do
        next_port
        wasmtime_serve "$service" "$PORT"
        GATEWAY_ENV+=(--env "TAX_${service^^}_URL=http://127.0.0.1:$PORT/$service")
    done
    next_port
    wasmtime_serve gateway "$PORT" "${GATEWAY_ENV[@]}"
    DEPLOYMENTS+=(wasmtime)
    URL[wasmtime]=http://127.0.0.1:$PORT/checkout/http
    for _ in $(seq 1 300); do
        [ "$(grep -l 'Serving HTTP' "$WORK"/wasmtime-*.log 2>/dev/null | wc -l)" = 6 ] && break
        sleep 0.1
    done
    [ "$(grep -l 'Serving HTTP' "$WORK"/wasmtime-*.log | wc -l)" = 6 ] || fail "wasmtime serve did not start"
fi
# Every service process, not only the gateway, must be up.
for log in "$WORK"/services-*.log; do
    for _ in $(seq 1 100); do grep -q listening "$log" && break; sleep 0.1; done
    grep -q listening "$log" || fail "$(basename "$log" .log) did not start"
done

# Byte-identical receipts everywhere.
for deployment in "${DEPLOYMENTS[@]}"; do
    "$BIN" verify --url "${URL[$deployment]}" --count "$CHECKED" >"$WORK/$deployment.sha" \
        2>"$WORK/verify-$deployment.log" || fail "verify $deployment"
done
for deployment in "${DEPLOYMENTS[@]}"; do
    cmp -s "$WORK/${DEPLOYMENTS[0]}.sha" "$WORK/$deployment.sha" ||
        fail "$deployment answers differ from ${DEPLOYMENTS[0]}: $(diff "$WORK/${DEPLOYMENTS[0]}.sha" "$WORK/$deployment.sha" | head -4)"
done
echo "all ${#DEPLOYMENTS[@]} deployments answer the same $CHECKED receipts" >&2

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PIDS...: user + system time of these processes, in clock ticks
    local sum=0 pid fields child
    for pid in "$@"; do
        # A `timeout` wrapper: count the server it runs.
        child=$(pgrep -P "$pid" | head -n 1 || true)
        [ -n "$child" ] && pid=$child
        read -r -a fields <"/proc/$pid/stat" || fail "process $pid is gone"
        sum=$((sum + fields[13] + fields[14]))
    done
    echo "$sum"
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

declare -A P50 P99 MAX CPU ERRORS
for deployment in "${DEPLOYMENTS[@]}"; do
    url=${URL[$deployment]}
    # shellcheck disable=SC2206
    pids=(${DEPLOYMENT_PIDS[$deployment]})
    [[ $deployment == *-redis ]] && pids+=("$REDIS_PID")
    echo "$deployment: ${RATE} req/s for ${DURATION} s" >&2
    # A deployment that cannot keep up gets its failures counted in the table, not hidden.
    "$BIN" load --url "$url" --rate "$RATE" --duration "$DURATION" >"$WORK/$deployment.rate.json" ||
        echo "$deployment: some requests failed at $RATE req/s" >&2
    echo "$deployment: max throughput, $CONNECTIONS connections, ${DURATION} s" >&2
    "$BIN" load --url "$url" --max --concurrency "$CONNECTIONS" --duration 1 --warmup 0 >/dev/null ||
        echo "$deployment: some requests failed in the warm-up" >&2
    before=$(cpu_ticks "${pids[@]}")
    "$BIN" load --url "$url" --max --concurrency "$CONNECTIONS" --duration "$DURATION" --warmup 0 \
        >"$WORK/$deployment.max.json" || echo "$deployment: some requests failed at max" >&2
    after=$(cpu_ticks "${pids[@]}")
    P50[$deployment]=$(json_field "$WORK/$deployment.rate.json" p50_ms)
    P99[$deployment]=$(json_field "$WORK/$deployment.rate.json" p99_ms)
    MAX[$deployment]=$(json_field "$WORK/$deployment.max.json" throughput)
    ERRORS[$deployment]="$(json_field "$WORK/$deployment.rate.json" errors) / $(json_field "$WORK/$deployment.max.json" errors)"
    requests=$(json_field "$WORK/$deployment.max.json" requests)
    CPU[$deployment]=$(python3 -c "print(($after - $before) * 1e6 / $CLK_TCK / $requests)")
done

label() {
    case $1 in
        monolith-redis) echo "(a) monolith, Redis" ;;
        services-redis) echo "(b) 6 services, Redis" ;;
        monolith-memory) echo "(a) monolith, in-process KV" ;;
        services-memory) echo "(b) 6 services, in-process KV" ;;
        meshwa-local) echo "(a') meshwa, whole checkout in one instance" ;;
        meshwa-invoke) echo "(c) meshwa, invoke + buffers" ;;
        meshwa-http) echo "(d) meshwa, in-process wasi:http" ;;
        meshwa-typed) echo "(f) meshwa, typed calls (composed)" ;;
        meshwa-typed-host) echo "(f') meshwa, typed calls (host-linked)" ;;
        wasmtime) echo "(e) 6 × wasmtime serve, loopback HTTP" ;;
    esac
}

report() {
echo "$(date -u +%Y-%m-%d), $(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB;"
"$BIN" logic-cost --iterations 2000 | sed 's/^/logic alone: /'
RUST_LOG=warn "$MESHWA_BENCH_BIN" logic-cost --component "$BUILT/tax_logic_cost.wasm" --iterations 2000 |
    sed 's/^/logic alone: /'
echo "open loop at $RATE req/s for $DURATION s; max: closed loop, $CONNECTIONS connections, $DURATION s;"
echo "CPU: user+system of the deployment's processes (Redis included) over the max run, per request;"
echo "tax at p50 = 1 - p50(monolith with the same store) / p50(deployment); (a'), (c), (d), (e) compare"
echo "with the monolith on the in-process store."
echo "load average of the machine before the run (1, 5, 15 min): $LOAD_AT_START; the run adds about 2."
echo
echo "| deployment | p50 ms | p99 ms | max req/s | CPU µs/req | tax at p50 | failed (rate / max) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for deployment in "${DEPLOYMENTS[@]}"; do
    baseline=monolith-memory
    [[ $deployment == *-redis ]] && baseline=monolith-redis
    python3 - "$(label "$deployment")" "${P50[$deployment]}" "${P99[$deployment]}" "${MAX[$deployment]}" \
        "${CPU[$deployment]}" "${P50[$baseline]}" "$([ "$deployment" = "$baseline" ] && echo 1 || echo 0)" \
        "${ERRORS[$deployment]}" <<'EOF'
import sys
label, p50, p99, rps, cpu, base, is_base, errors = sys.argv[1:]
p50, p99, rps, cpu, base = map(float, (p50, p99, rps, cpu, base))
tax = "baseline" if is_base == "1" else f"{(1 - base / p50) * 100:.0f} %"
print(f"| {label} | {p50:.2f} | {p99:.2f} | {rps:.0f} | {cpu:.0f} | {tax} | {errors} |")
EOF
done
}

report | tee "$WORK/report.md"

# EXPLAIN=1: where each hop's time goes, from a second meshwa server that accounts for it
# (`--explain`, which costs a little itself, so the table above comes from a server without it).
if [ "$EXPLAIN" = 1 ]; then
    kill "$MESHWA_PID" 2>/dev/null || true
    next_port
    EXPLAIN_PORT=$PORT
    next_port
    EXPLAIN_ADMIN=http://127.0.0.1:$PORT
    EXPLAIN_TOKEN=explain-$$-$RANDOM
    MESHWA_OPERATOR_TOKEN=$EXPLAIN_TOKEN timeout "$LIFETIME" "$MESHWA_BIN" serve "$WORK/meshwa.toml" "$WORK/meshwa-typed.toml" "$WORK/meshwa-typed-host.toml" \
        --listen "127.0.0.1:$EXPLAIN_PORT" --admin-listen "127.0.0.1:$PORT" \
        --data-dir "$WORK/meshwa-explain" --explain 2>"$WORK/meshwa-explain.log" >&2 &
    PIDS+=($!)
    EXPLAIN_PID=$(pgrep -P $! || echo $!)
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null -X POST "http://127.0.0.1:$EXPLAIN_PORT/shop/load" && break
        sleep 0.1
    done
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$EXPLAIN_PORT/shop-typed/load" || fail "explain: /shop-typed/load"
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$EXPLAIN_PORT/shop-host/load" || fail "explain: /shop-host/load"
    scrape() { curl -fs -H "authorization: Bearer $EXPLAIN_TOKEN" "$EXPLAIN_ADMIN/metrics" >"$1" || fail "scrape"; }
    minor_faults() { read -r -a fields <"/proc/$EXPLAIN_PID/stat"; echo "${fields[9]}"; }
    for deployment in meshwa-local meshwa-invoke meshwa-http meshwa-typed meshwa-typed-host; do
        url=http://127.0.0.1:$EXPLAIN_PORT${URL[$deployment]#http://127.0.0.1:$MESHWA_PORT}
        "$BIN" load --url "$url" --rate "$RATE" --duration 1 >/dev/null || true
        scrape "$WORK/before.prom"
        faults=$(minor_faults)
        "$BIN" load --url "$url" --rate "$RATE" --duration "$DURATION" --warmup 0 >"$WORK/explain.json" ||
            echo "$deployment: some requests failed with --explain" >&2
        faults=$(($(minor_faults) - faults))
        scrape "$WORK/after.prom"
        python3 "$HERE/explain.py" "$WORK/before.prom" "$WORK/after.prom" \
            "$(json_field "$WORK/explain.json" requests)" "$(label "$deployment"), at $RATE req/s" \
            "$faults" | tee -a "$WORK/explain.md"
    done
fi
if [ "$SMOKE" != 1 ]; then
    # The table goes into docs/benchmarks.md, between its markers.
    python3 - "$REPO/docs/benchmarks.md" "$WORK/report.md" <<'EOF'
import sys
path, report = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(path).read()
begin, end = "<!-- tax:begin -->", "<!-- tax:end -->"
if begin not in text:
    sys.exit(f"{path} has no {begin} marker")
head, rest = text.split(begin, 1)
tail = rest.split(end, 1)[1]
open(path, "w").write(f"{head}{begin}\n{report}\n{end}{tail}")
EOF
    echo "written into docs/benchmarks.md" >&2
fi
