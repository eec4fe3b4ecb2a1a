#!/usr/bin/env bash
# The infrastructure tax of microservices, natively: the checkout application deployed
#   (a) as a monolith (one process, the services as function calls), and
#   (b) as 6 services (gateway, auth, cart, pricing, inventory, render: one process each,
#       HTTP/1.1 keep-alive and JSON between them, pricing and inventory called concurrently),
# both reading a Redis over loopback (and again, both with an in-process store, which leaves the
# HTTP + JSON part of the tax alone). Checks that every deployment answers byte-identical
# receipts, then measures each: latency at a fixed moderate rate (open loop), max throughput
# (closed loop), CPU time per request of all its processes (Redis included). Prints a Markdown
# table. Everything listens on 127.0.0.1; every process started here is stopped on exit, error or
# Ctrl-C, and stops by itself after a while anyway.
#
# Usage: bench/tax/run-native.sh
# Environment: RATE=200 (req/s), DURATION=10 (s per measurement), CONNECTIONS=16 (for max),
#   CHECKED=32 (requests compared), MEMORY_KV=1 (0: skip the in-process store deployments).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

RATE=${RATE:-200}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
CHECKED=${CHECKED:-32}
MEMORY_KV=${MEMORY_KV:-1}
TIME_LIMIT=170   # seconds for the whole run once built; the servers exit by themselves after
LIFETIME=240     # this many seconds even if this script is killed without a chance to clean up
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/tax}

if ! command -v redis-server >/dev/null; then
    echo "installing redis-server" >&2
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
(cd "$HERE" && cargo build --release --quiet)
BIN=$CARGO_TARGET_DIR/release/tax-native

# Other work on the machine skews every number: say how busy it was.
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d)
PIDS=()
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
socks = [socket.socket() for _ in range(15)]
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

# Redis: no persistence, in the scratch directory, killed on exit.
next_port
REDIS_PORT=$PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no \
    --dir "$WORK" --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
"$BIN" preload --redis "$REDIS_URL" 2>"$WORK/preload.log" || fail "preload"

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

DEPLOYMENTS=(monolith-redis services-redis)
deploy redis --redis "$REDIS_URL"
if [ "$MEMORY_KV" = 1 ]; then
    DEPLOYMENTS+=(monolith-memory services-memory)
    deploy memory --memory-kv
fi
for deployment in "${DEPLOYMENTS[@]}"; do
    wait_ready "${URL[$deployment]%/checkout}/health"
done
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
    local sum=0 pid fields
    for pid in "$@"; do
        read -r -a fields <"/proc/$pid/stat" || fail "process $pid is gone"
        sum=$((sum + fields[13] + fields[14]))
    done
    echo "$sum"
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

declare -A P50 P99 MAX CPU
for deployment in "${DEPLOYMENTS[@]}"; do
    url=${URL[$deployment]}
    # shellcheck disable=SC2206
    pids=(${DEPLOYMENT_PIDS[$deployment]})
    [[ $deployment == *-redis ]] && pids+=("$REDIS_PID")
    echo "$deployment: ${RATE} req/s for ${DURATION} s" >&2
    "$BIN" load --url "$url" --rate "$RATE" --duration "$DURATION" >"$WORK/$deployment.rate.json" ||
        fail "$deployment at $RATE req/s"
    echo "$deployment: max throughput, $CONNECTIONS connections, ${DURATION} s" >&2
    "$BIN" load --url "$url" --max --concurrency "$CONNECTIONS" --duration 1 --warmup 0 >/dev/null ||
        fail "$deployment warm-up"
    before=$(cpu_ticks "${pids[@]}")
    "$BIN" load --url "$url" --max --concurrency "$CONNECTIONS" --duration "$DURATION" --warmup 0 \
        >"$WORK/$deployment.max.json" || fail "$deployment at max throughput"
    after=$(cpu_ticks "${pids[@]}")
    P50[$deployment]=$(json_field "$WORK/$deployment.rate.json" p50_ms)
    P99[$deployment]=$(json_field "$WORK/$deployment.rate.json" p99_ms)
    MAX[$deployment]=$(json_field "$WORK/$deployment.max.json" throughput)
    requests=$(json_field "$WORK/$deployment.max.json" requests)
    CPU[$deployment]=$(python3 -c "print(($after - $before) * 1e6 / $CLK_TCK / $requests)")
done

label() {
    case $1 in
        monolith-redis) echo "(a) monolith, Redis" ;;
        services-redis) echo "(b) 6 services, Redis" ;;
        monolith-memory) echo "(a) monolith, in-process KV" ;;
        services-memory) echo "(b) 6 services, in-process KV" ;;
    esac
}

echo
"$BIN" logic-cost --iterations 2000 | sed 's/^/logic alone: /'
echo "open loop at $RATE req/s for $DURATION s; max: closed loop, $CONNECTIONS connections, $DURATION s;"
echo "CPU: user+system of the deployment's processes (Redis included) over the max run, per request;"
echo "tax at p50 = 1 - p50(monolith with the same store) / p50(deployment)."
echo "load average of the machine before the run (1, 5, 15 min): $LOAD_AT_START; the run adds about 2."
echo
echo "| deployment | p50 ms | p99 ms | max req/s | CPU µs/req | tax at p50 |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for deployment in "${DEPLOYMENTS[@]}"; do
    baseline=monolith-${deployment#*-}
    python3 - "$(label "$deployment")" "${P50[$deployment]}" "${P99[$deployment]}" "${MAX[$deployment]}" \
        "${CPU[$deployment]}" "${P50[$baseline]}" "$([ "$deployment" = "$baseline" ] && echo 1 || echo 0)" <<'EOF'
import sys
label, p50, p99, rps, cpu, base, is_base = sys.argv[1:]
p50, p99, rps, cpu, base = map(float, (p50, p99, rps, cpu, base))
tax = "baseline" if is_base == "1" else f"{(1 - base / p50) * 100:.0f} %"
print(f"| {label} | {p50:.2f} | {p99:.2f} | {rps:.0f} | {cpu:.0f} | {tax} |")
EOF
done
