//! The checkout logic of `bench/tax` timed inside the sandbox: the same loop as the native
//! harness's `logic-cost` (256 sample requests, the dataset in an in-memory map, no host call
//! but the clock), so that the two figures differ only in the code that runs them: LLVM's
//! native code against Cranelift's code for the same crate compiled to wasm32-wasip2.
//!
//! A CGI command: `?iterations=N` (default 2000), answers one line of plain text.

use std::time::Instant;

const SAMPLES: u32 = 256;

fn main() {
    let iterations = std::env::var("QUERY_STRING")
        .ok()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("iterations=")?.parse::<u32>().ok())
        })
        .unwrap_or(2000)
        .clamp(1, 100_000);
    let kv = tax_logic::MemoryKv::with_dataset();
    let bodies: Vec<Vec<u8>> = (0..SAMPLES)
        .map(|i| serde_json::to_vec(&tax_logic::sample_request(i)).unwrap_or_default())
        .collect();
    let mut receipt_bytes = 0usize;
    let mut failures = 0u32;
    let mut run = |i: usize| match tax_logic::checkout_monolith_json(&bodies[i % bodies.len()], &kv)
    {
        Ok(html) => receipt_bytes += html.len(),
        Err(_) => failures += 1,
    };
    // One pass over the samples first, as the native harness does (caches, allocator growth).
    (0..bodies.len()).for_each(&mut run);
    let started = Instant::now();
    (0..iterations as usize).for_each(&mut run);
    let elapsed = started.elapsed();
    if failures > 0 {
        print!("Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n");
        println!("{failures} sample checkouts failed");
        return;
    }
    print!("Content-Type: text/plain\r\n\r\n");
    println!(
        "{:.1} µs per checkout in the sandbox ({iterations} iterations; receipts {} B on average)",
        elapsed.as_secs_f64() * 1e6 / f64::from(iterations),
        receipt_bytes / (bodies.len() + iterations as usize)
    );
}
