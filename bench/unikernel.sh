#!/usr/bin/env bash
# meshwa as a unikernel (issue 23) against the Linux host, on this machine, without KVM.
#
# Prints, as markdown tables for docs/unikernel.md:
#   - boot: QEMU started → first answered request (ROUNDS boots, median), image and bundle sizes;
#   - fresh instance p50/p99 of acme's hello: inside the VM (`bench=N` on the kernel command line,
#     no network; native code and Pulley), the same engine code as a Linux process (Pulley: native
#     code is for the kernel's triple) on the CPU and under `qemu-x86_64` (the same TCG emulation
#     of the CPU, so the VM's cost is compared with Linux's under equal terms);
#   - hello requests/s and p50 over HTTP (wrk, CONNECTIONS connections): the VM, and `meshwa
#     serve --allocator on-demand` (the Linux host, Cranelift-compiled code) natively and under
#     `qemu-x86_64`;
#   - memory: the kernel's heap in use after the in-VM run, QEMU's resident set, and the resident
#     set of `meshwa serve` serving the same function.
#
# Usage: bench/unikernel.sh [ROUNDS=3] [DURATION=10s] [CONNECTIONS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
CONNECTIONS=${3:-4}
# shellcheck source=bench/lib.sh
. bench/lib.sh
ensure_wrk
command -v qemu-x86_64 >/dev/null || { apt-get install -y -qq qemu-user >/dev/null; }
WORK=$(mktemp -d)
trap 'kill "${QEMU_PID:-0}" "${SERVE_PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for execution in native pulley; do
    cargo xtask unikernel --execution "$execution" examples/acme-greeter/meshwa.toml >/dev/null
    cp target/unikernel/bundle.bin "$WORK/bundle-$execution.bin"
done
cargo build -q --release -p meshwa
(cd unikernel && CARGO_TARGET_DIR=../target/unikernel cargo build -q --release \
    -p meshwa-unikernel-runtime --features compile --example fresh_instance)
KERNEL=target/unikernel/x86_64-unknown-none/release/meshwa-unikernel
HELLO=target/guests/wasm32-wasip2/release/acme_greeter.wasm
PORT=18380

# Boots the VM with bundle $2 (native or pulley) and kernel command line $1; QEMU_PID, console
# in $WORK/console, input $WORK/in.
boot() {
    rm -f "$WORK/in"; mkfifo "$WORK/in"
    sleep 1000 > "$WORK/in" & HOLD_PID=$!
    qemu-system-x86_64 -machine pc -m 512M -no-reboot -nographic \
        -cpu qemu64,apic,fsgsbase,fxsr,rdrand,rdtscp,xsave,xsaveopt,+ssse3,+sse4.1,+sse4.2 \
        -kernel "$KERNEL" -initrd "$WORK/bundle-$2.bin" -append "$1" \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$PORT-:8080" \
        -device virtio-net-pci,netdev=net0,disable-legacy=on,romfile= \
        -serial stdio -monitor none -display none < "$WORK/in" > "$WORK/console" 2>&1 &
    QEMU_PID=$!
}
shutdown_vm() {
    echo shutdown > "$WORK/in"
    wait "$QEMU_PID" 2>/dev/null || true
    kill "$HOLD_PID" 2>/dev/null || true
    QEMU_PID=0
}
first_answer_ms() {
    local started=$1
    for _ in $(seq 3000); do
        curl -sf -m 0.5 -o /dev/null "127.0.0.1:$PORT/acme/hello" && break
        sleep 0.01
    done
    echo $(( ($(date +%s%N) - started) / 1000000 ))
}

echo "## Boot"
echo
declare -a boots
for round in $(seq "$ROUNDS"); do
    started=$(date +%s%N)
    boot "" native
    boots+=("$(first_answer_ms "$started")")
    shutdown_vm
done
echo "QEMU started → first answered request, ms: ${boots[*]} (median $(median "${boots[@]}"))"
loadable=$(size -A "$KERNEL" | awk '$1 ~ /^\.(text|rodata|data|note)/ {s += $2} END {print s}')
objcopy --strip-debug "$KERNEL" "$WORK/kernel" 
echo "kernel image: $(stat -c %s "$WORK/kernel") bytes stripped (loaded: $loadable bytes); bundle of acme hello: native $(stat -c %s "$WORK/bundle-native.bin") bytes, Pulley $(stat -c %s "$WORK/bundle-pulley.bin") bytes; the component: $(stat -c %s "$HELLO") bytes"
echo

echo "## Fresh instance (acme hello, no network)"
echo
echo "| where | p50 | p99 |"
echo "| --- | ---: | ---: |"
for execution in native pulley; do
    for round in $(seq "$ROUNDS"); do
        boot "bench=2000" "$execution"
        for _ in $(seq 600); do grep -q "meshwa: bench" "$WORK/console" && break; sleep 0.1; done
        line=$(grep "meshwa: bench" "$WORK/console" | tr -d '\r')
        HEAP=$(echo "$line" | sed -E 's/.*heap in use ([0-9]+) KiB.*/\1/')
        echo "| VM (TCG), $execution, round $round | $(echo "$line" | sed -E 's/.*p50 ([0-9]+) us.*/\1/') µs | $(echo "$line" | sed -E 's/.*p99 ([0-9]+) us.*/\1/') µs |"
        shutdown_vm
    done
done
for round in $(seq "$ROUNDS"); do
    line=$(qemu-x86_64 target/unikernel/release/examples/fresh_instance "$HELLO" 2000)
    echo "| Linux process under qemu-x86_64 (TCG), pulley, round $round | $(echo "$line" | sed -E 's/.*p50 ([0-9]+) us.*/\1/') µs | $(echo "$line" | sed -E 's/.*p99 ([0-9]+) us.*/\1/') µs |"
done
for round in $(seq "$ROUNDS"); do
    line=$(target/unikernel/release/examples/fresh_instance "$HELLO" 2000)
    echo "| Linux process on the CPU (no emulation), pulley, round $round | $(echo "$line" | sed -E 's/.*p50 ([0-9]+) us.*/\1/') µs | $(echo "$line" | sed -E 's/.*p99 ([0-9]+) us.*/\1/') µs |"
done
echo

echo "## Hello over HTTP ($CONNECTIONS connections, $DURATION, wrk)"
echo
echo "| server | req/s | p50 ms |"
echo "| --- | ---: | ---: |"
for execution in native pulley; do
    boot "" "$execution"
    first_answer_ms "$(date +%s%N)" >/dev/null
    for round in $(seq "$ROUNDS"); do
        read -r rps p50 < <(wrk_point "http://127.0.0.1:$PORT/acme/hello" "$CONNECTIONS" "$DURATION")
        echo "| unikernel VM (TCG), $execution, round $round | $rps | $p50 |"
    done
    QEMU_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$QEMU_PID/status")
    shutdown_vm
done

serve() { # $1: prefix command (empty or qemu-x86_64)
    # On-demand instances: under qemu-x86_64 the pooling allocator's reservation becomes
    # resident (tens of GiB); natively too, so both rows run the same configuration.
    $1 target/release/meshwa serve examples/acme-greeter/meshwa.toml --allocator on-demand \
        --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$((PORT + 1))" \
        --data-dir "$WORK/data" --cache-dir "$WORK/cache" > "$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 600); do curl -sf -m 1 -o /dev/null "127.0.0.1:$PORT/acme/hello" && break; sleep 0.1; done
}
for prefix in "qemu-x86_64" ""; do
    serve "$prefix"
    for round in $(seq "$ROUNDS"); do
        read -r rps p50 < <(wrk_point "http://127.0.0.1:$PORT/acme/hello" "$CONNECTIONS" "$DURATION")
        echo "| meshwa serve (Linux, Cranelift)${prefix:+ under $prefix (TCG)}, round $round | $rps | $p50 |"
    done
    SERVE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$SERVE_PID/status")
    kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=0
done
echo
echo "## Memory"
echo
echo "kernel heap in use after 2000 requests: ${HEAP} KiB; QEMU resident (512 MiB guest, after the wrk runs): $((QEMU_RSS / 1024)) MiB; meshwa serve resident (native, after its wrk runs): $((SERVE_RSS / 1024)) MiB"
