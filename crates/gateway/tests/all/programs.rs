//! Guest programs that exist for benchmarks, tested here so that each one is known to work before
//! a benchmark relies on it: the checkout app of the infrastructure-tax benchmark, the caller and
//! callee of the per-hop benchmark, the C SHA-256 kernel, and the SDK's request arena that the
//! checkout allocates with.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::common::{client, get, manifest, send, start};
use meshwa_test_programs as programs;

/// Every way the checkout runs on meshwa (one instance, invoke with buffers in MessagePack or
/// JSON, in-process wasi:http, typed calls between composed or host-linked functions, the same
/// components linked both ways) answers the receipt the
/// native monolith computes from the same dataset, byte for byte, and refuses what it refuses
/// alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_checkout_app_answers_what_the_native_monolith_answers() {
    let tax = Path::new(programs::EXAMPLES_DIR)
        .parent()
        .unwrap()
        .join("bench/tax");
    let server = start(&[
        tax.join("meshwa.toml"),
        tax.join("meshwa-typed.toml"),
        tax.join("meshwa-typed-host.toml"),
    ])
    .await;
    let c = client();
    for load in ["/shop/load", "/shop-typed/load", "/shop-host/load"] {
        let loaded = send(&c, server.addr, "POST", load, b"").await;
        assert_eq!(loaded.status, 200, "{load}: {}", loaded.body);
    }

    let store = tax_logic::MemoryKv::with_dataset();
    for i in 0..3 {
        let request = tax_logic::sample_request(i);
        let expected = tax_logic::checkout_monolith(&request, &store).unwrap();
        let body = serde_json::to_vec(&request).unwrap();
        for path in [
            "/shop/checkout/local",
            "/shop/checkout/invoke",
            "/shop/checkout/invoke?codec=json",
            "/shop/checkout/http",
            "/shop-typed/checkout/typed",
            "/shop-host/checkout/typed",
        ] {
            let answer = send(&c, server.addr, "POST", path, &body).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            assert!(
                answer.body == expected,
                "{path}: another receipt for order {i}"
            );
        }
    }
    // A refusal from inside a service (a forged token, refused by auth) crosses a typed call as
    // the service's error, answered as the other deployments answer it.
    let mut forged = tax_logic::sample_request(0);
    forged.token.push('0');
    let body = serde_json::to_vec(&forged).unwrap();
    let expected = send(&c, server.addr, "POST", "/shop/checkout/local", &body).await;
    assert_eq!(expected.status, 401, "{}", expected.body);
    for path in [
        "/shop/checkout/invoke",
        "/shop-typed/checkout/typed",
        "/shop-host/checkout/typed",
    ] {
        let answer = send(&c, server.addr, "POST", path, &body).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{path}"
        );
    }
}

/// The per-hop benchmark's caller times `n` calls to its sink in each style and answers
/// `<p50 ns> <p99 ns>`; the sink reads what it is asked to. (The caller names its app `bench`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_hop_benchmark_programs_call_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("hops.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"bench\"\n\
             [[functions]]\nname = \"hopper\"\ncomponent = \"{}\"\nroute = \"/hop\"\n\
             [[functions]]\nname = \"sink\"\ncomponent = \"{}\"\ncallable-by = [\"hopper\"]\n",
            programs::HOPPER,
            programs::SINK
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    for style in ["invoke-full", "invoke-head", "http"] {
        let answer = get(server.addr, &format!("/hop/{style}/4096/5")).await;
        assert_eq!(answer.status, 200, "{style}: {}", answer.body);
        let times: Vec<u64> = answer
            .body
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        assert!(
            times.len() == 2 && times[0] > 0 && times[0] <= times[1],
            "{style}: {}",
            answer.body
        );
    }
    let refused = get(server.addr, "/hop/invoke-full/x/5").await;
    assert_eq!(refused.status, 400);
}

/// The C SHA-256 kernel (a plain WASI command, served CGI-style) hashes the request body right.
#[tokio::test]
pub(crate) async fn the_c_sha256_kernel_hashes_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sha.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"sha\"\n\
             [[functions]]\nname = \"sha\"\nkind = \"cgi\"\ncomponent = \"{}\"\nroute = \"/sha\"\n",
            programs::C_SHA256
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    let body = b"meshwa: the same digest inside the sandbox".repeat(100);
    let answer = send(&client(), server.addr, "POST", "/sha?mib=0", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(answer.body, format!("{expected}  0 MiB\n"));
}

/// `guests/tax-logic-cost` (`meshwa-bench logic-cost`) runs the checkout logic in its loop: as a
/// CGI function it answers one timing line whose average receipt size is the native logic's for
/// the same sample orders (its 256 warm-up checkouts and the timed ones), so it really did the
/// work it timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_checkout_logic_loop_runs_the_checkout_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("logic.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"logic\"\n\
             [[functions]]\nname = \"cost\"\nkind = \"cgi\"\ncomponent = \"{}\"\n\
             route = \"/logic-cost\"\nlimits = {{ max-memory = \"128MiB\", timeout = \"60s\" }}\n",
            programs::TAX_LOGIC_COST
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    let answer = send(
        &client(),
        server.addr,
        "GET",
        "/logic-cost?iterations=3",
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let store = tax_logic::MemoryKv::with_dataset();
    let receipt = |i: u32| {
        tax_logic::checkout_monolith(&tax_logic::sample_request(i), &store)
            .unwrap()
            .len()
    };
    let receipts: usize = (0..256).map(receipt).sum::<usize>() + (0..3).map(receipt).sum::<usize>();
    let suffix = format!(
        " µs per checkout in the sandbox (3 iterations; receipts {} B on average)\n",
        receipts / 259
    );
    let micros = answer.body.strip_suffix(&suffix).unwrap_or_else(|| {
        panic!(
            "expected a timing line ending {suffix:?}, got {:?}",
            answer.body
        )
    });
    assert!(micros.parse::<f64>().unwrap() > 0.0, "{}", answer.body);
}

/// `meshwa_sdk::alloc::RequestArena` (`guests/arena`, 256 KiB reserved): a request that fits in
/// its reserved memory never grows linear memory (the point of reserving: no page-protection
/// change and TLB flush per instance); a larger one grows it and finds every block intact; one
/// past `max-memory` ends as out of memory, and the next request is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_sdk_arena_grows_memory_only_past_its_reserved_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "t",
        &[("arena", programs::ARENA, "/arena", "max-memory = \"16MiB\"")],
    );
    let server = start(&[m]).await;
    // What the guest says about a request that allocates about `bytes`.
    let addr = server.addr;
    let allocate = |bytes: u64| async move { get(addr, &format!("/arena/?bytes={bytes}")).await };
    for (bytes, expected) in [
        (20_000, "grew=false intact=true"),
        (2_000_000, "grew=true intact=true"),
    ] {
        let answer = allocate(bytes).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            answer.body.starts_with(expected),
            "{bytes}: {}",
            answer.body
        );
    }
    let too_much = allocate(40_000_000).await;
    assert_eq!(too_much.status, 503, "{}", too_much.body);
    assert!(too_much.body.contains("out_of_memory"), "{}", too_much.body);
    let again = allocate(20_000).await;
    assert!(
        again.body.starts_with("grew=false intact=true"),
        "{}",
        again.body
    );
}
