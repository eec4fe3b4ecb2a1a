#!/usr/bin/env bash
# A/B of one checkout deployment on meshwa across builds: alternates variants, ROUNDS rounds; each
# round starts a fresh server per variant, loads the dataset, warms up 2 s, then runs the harness's
# load generator at max load (16 connections, DURATION s) and prints req/s, p50 and the server's
# CPU per request. Variants differ in the directory of the guests' components and/or the meshwa
# binary, so a change to either is measured against its baseline in the same sitting (this VM's
# noise is ±15 % between minutes; compare medians of rounds).
#
# Usage: bench/tax/ab.sh URL_PATH NAME=COMPONENT_DIR:MESHWA_BIN [NAME=DIR:BIN ...]
#   e.g. bench/tax/ab.sh /shop/checkout/local base=/tmp/base:target/release/meshwa \
#            new=target/guests/wasm32-wasip2/release-lto:target/release/meshwa
# Environment: ROUNDS=3, DURATION=5, MANIFEST=meshwa.toml (of bench/tax), LOAD=/shop/load (the
#   dataset's route for that manifest: /shop-typed/load for meshwa-typed.toml), PORT=18080.
# Needs target/tax/release/tax-native (bench/tax/run.sh builds it). Listens on 127.0.0.1 only;
# every server is stopped after its round, and by `timeout` after 120 s anyway.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$REPO/target/tax/release/tax-native
SUFFIX=$1
shift
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
MANIFEST=${MANIFEST:-meshwa.toml}
LOAD=${LOAD:-/shop/load}
PORT=${PORT:-18080}
CLK=$(getconf CLK_TCK)
# A server left behind (by a failed step, or by another run) would answer in place of the one
# under test: stop ours on every exit, and refuse to start where the port is taken.
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi' EXIT
for round in $(seq 1 "$ROUNDS"); do
    for variant in "$@"; do
        name=${variant%%=*}
        rest=${variant#*=}
        dir=$(realpath "${rest%%:*}")
        meshwa=$(realpath "${rest#*:}")
        work=$(mktemp -d)
        sed "s|\"../../target/guests/wasm32-wasip2/release/|\"$dir/|" "$REPO/bench/tax/$MANIFEST" >"$work/meshwa.toml"
        if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
            echo "ab.sh: something already listens on 127.0.0.1:$PORT (PORT= chooses another)" >&2
            exit 1
        fi
        timeout 120 "$meshwa" serve "$work/meshwa.toml" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$((PORT + 1))" \
            --data-dir "$work/data" 2>"$work/log" >/dev/null &
        wrapper=$!
        for _ in $(seq 1 300); do curl -fs -o /dev/null -X POST "http://127.0.0.1:$PORT$LOAD" && break; sleep 0.1; done
        server=$(pgrep -P "$wrapper")
        url=http://127.0.0.1:$PORT$SUFFIX
        "$BIN" load --url "$url" --max --concurrency 16 --duration 2 --warmup 0 >/dev/null 2>&1
        before=$(awk '{print $14+$15}' "/proc/$server/stat")
        "$BIN" load --url "$url" --max --concurrency 16 --duration "$DURATION" --warmup 0 >"$work/max.json" 2>/dev/null
        after=$(awk '{print $14+$15}' "/proc/$server/stat")
        python3 - "$name" "$round" "$before" "$after" "$CLK" "$work/max.json" <<'PY'
import json, sys
name, rnd, before, after, clk, path = sys.argv[1:]
d = json.load(open(path))
cpu = (int(after) - int(before)) * 1e6 / int(clk) / d["requests"]
print(f"{name:12s} round {rnd}: {d['throughput']:7.0f} req/s  p50 {d.get('p50_ms', 0):.2f} ms  CPU {cpu:6.0f} us/req  errors {d.get('errors')}")
PY
        kill "$server"
        server=
        wait "$wrapper" 2>/dev/null || true
        rm -rf "$work"
    done
done
