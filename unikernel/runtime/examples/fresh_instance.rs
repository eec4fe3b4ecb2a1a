//! The unikernel's per-request cost on Linux: `Server::handle` for one GET, a fresh instance
//! each time, on the very engine code and settings the kernel runs (Pulley, no compiler at load).
//!
//! `cargo run --release --features compile --example fresh_instance -- COMPONENT.wasm [N]`
//! prints the median and the 99th percentile over N requests (default 2000). bench/unikernel.sh
//! runs it natively and under `qemu-x86_64` (the same CPU emulation the VM gets), so the VM's
//! in-image figure (`bench=N` on the kernel command line) can be compared fairly.

use std::time::Instant;

use meshwa_unikernel_runtime::wasmtime::Engine;
use meshwa_unikernel_runtime::{
    Bundle, BundleFunction, Execution, Request, Server, TICK_MS, compile_bundle, engine_config,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let component = args
        .next()
        .ok_or("usage: fresh_instance COMPONENT.wasm [N]")?;
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let bundle = compile_bundle(
        vec![BundleFunction {
            tenant: "bench".into(),
            app: "bench".into(),
            name: "hello".into(),
            route: "/bench".into(),
            max_memory: 16 << 20,
            timeout_ms: 2000,
            max_request_body: 64 << 10,
            component: std::fs::read(&component)?,
        }],
        Execution::Pulley,
    )?;
    let mut config = engine_config(Execution::Pulley);
    config.enable_compiler(false);
    let engine = Engine::new(&config)?;
    let server = Server::new(&engine, Bundle::decode(&bundle)?)?;
    // The epoch advances as in the kernel (every TICK_MS), so deadlines are checked as there.
    let ticker = engine.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(TICK_MS));
            ticker.increment_epoch();
        }
    });
    let mut nanos = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let request = Request {
            method: "GET".into(),
            path_with_query: "/bench".into(),
            ..Default::default()
        };
        let started = Instant::now();
        let response = server.handle(request);
        nanos.push(started.elapsed().as_nanos() as u64);
        if response.status != 200 {
            return Err(format!("status {}", response.status).into());
        }
    }
    nanos.sort_unstable();
    let at = |percent: usize| nanos[(nanos.len() - 1) * percent / 100] / 1000;
    println!(
        "{count} fresh instances: p50 {} us, p99 {} us",
        at(50),
        at(99)
    );
    Ok(())
}
