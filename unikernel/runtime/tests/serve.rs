//! The server against the repo's real test components, on Linux: compiled into a bundle the way
//! the bundler does it, decoded, and loaded into an engine *without* a compiler (as in the
//! kernel), with a thread advancing the epoch every `TICK_MS` (the kernel's timer interrupt).
//!
//! The components are built by `cargo xtask build-examples` (or the root workspace's test build)
//! into `target/guests/wasm32-wasip2/release`; a missing one fails the test with that hint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test's panic is a failing test, not a host crash"
)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use meshwa_unikernel_runtime::wasmtime::{Config, Engine};
use meshwa_unikernel_runtime::{
    Bundle, BundleFunction, BundledFunction, Execution, LoadError, Request, Response, Server,
    TICK_MS, compile_bundle, engine_config,
};

const MIB: u64 = 1 << 20;

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "test component {} is missing ({error}): build the guests first with \
             `cargo xtask build-examples` in /work/main",
            path.display()
        )
    })
}

fn function(
    tenant: &str,
    app: &str,
    name: &str,
    route: &str,
    (max_memory, timeout_ms, max_request_body): (u64, u64, u64),
    component: &str,
) -> BundleFunction {
    BundleFunction {
        tenant: tenant.into(),
        app: app.into(),
        name: name.into(),
        route: route.into(),
        max_memory,
        timeout_ms,
        max_request_body,
        component: guest(component),
    }
}

/// The manifests' limits: acme 16 MiB / 2 s / 64 KiB, globex's two functions as in
/// examples/globex-textkit, the fault function 16 MiB / 1 s / 64 KiB.
fn bundle_functions() -> Vec<BundleFunction> {
    vec![
        function(
            "acme",
            "greeter",
            "hello",
            "/acme/hello",
            (16 * MIB, 2000, 64 << 10),
            "acme_greeter",
        ),
        function(
            "globex",
            "textkit",
            "stats",
            "/globex/stats",
            (32 * MIB, 5000, 4 * MIB),
            "globex_textkit",
        ),
        function(
            "globex",
            "textkit",
            "upper",
            "/globex/upper",
            (16 * MIB, 30_000, 1 << 30),
            "globex_textkit",
        ),
        function(
            "faulty",
            "faults",
            "faults",
            "/faults",
            (16 * MIB, 1000, 64 << 10),
            "faults",
        ),
    ]
}

/// The engine the kernel has: `engine_config(Execution::Pulley)` and no compiler.
fn kernel_engine() -> Engine {
    let mut config: Config = engine_config(Execution::Pulley);
    config.enable_compiler(false);
    Engine::new(&config).unwrap()
}

struct Fixture {
    server: Server,
}

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log_sink(line: &str) {
    LOG.lock().unwrap().push(line.to_string());
}

fn logged(needle: &str) -> bool {
    LOG.lock().unwrap().iter().any(|line| line.contains(needle))
}

fn fill_random(buffer: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    for chunk in buffer.chunks_mut(8) {
        let value = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        meshwa_unikernel_runtime::set_log_sink(log_sink);
        meshwa_unikernel_runtime::set_random(fill_random);
        let started = Instant::now();
        let bytes = compile_bundle(bundle_functions(), Execution::Pulley).unwrap();
        eprintln!(
            "compiled the bundle ({} KiB) in {:?}",
            bytes.len() / 1024,
            started.elapsed()
        );
        let bundle = Bundle::decode(&bytes).unwrap();
        let engine = kernel_engine();
        let ticker = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(TICK_MS));
            }
        });
        let server = Server::new(&engine, bundle).unwrap();
        Fixture { server }
    })
}

fn request(method: &str, path: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        path_with_query: path.into(),
        headers: vec![("host".into(), b"localhost:8080".to_vec())],
        body: body.to_vec(),
    }
}

fn get(path: &str) -> Response {
    fixture().server.handle(request("GET", path, b""))
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Checks an error response: status, JSON body with the kind, an error id also in the header.
fn assert_failure(response: &Response, status: u16, kind: &str) {
    assert_eq!(response.status, status, "body: {}", text(response));
    assert_eq!(
        response.header("content-type"),
        Some(&b"application/json"[..])
    );
    let id = String::from_utf8(response.header("x-meshwa-error-id").unwrap().to_vec()).unwrap();
    let body = text(response);
    assert!(
        body.starts_with(&format!(
            "{{\"error\":\"{kind}\",\"error_id\":\"{id}\",\"message\":\""
        )),
        "{body}"
    );
    assert!(body.ends_with("\"}\n"), "{body}");
}

#[test]
fn acme_greets_by_name() {
    let response = get("/acme/hello?name=Ada");
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(
        text(&response),
        "{\"greeting\":\"Hello, Ada!\",\"tenant\":\"acme\"}\n"
    );
    assert_eq!(
        response.header("content-type"),
        Some(&b"application/json"[..])
    );
    // Paths below the route are the function's too.
    assert_eq!(get("/acme/hello/below").status, 200);
}

#[test]
fn globex_upper_cases_and_counts() {
    let server = &fixture().server;
    let response = server.handle(request("POST", "/globex/upper", b"hello, unikernel\n"));
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(text(&response), "HELLO, UNIKERNEL\n");
    assert_eq!(response.header("content-type"), Some(&b"text/plain"[..]));

    // Larger than one read chunk (16 KiB) and one write (4 KiB).
    let big: Vec<u8> = (0..100_000).map(|i| b"abc xyz\n"[i % 8]).collect();
    let response = server.handle(request("POST", "/globex/upper", &big));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, big.to_ascii_uppercase());

    let response = server.handle(request("POST", "/globex/stats", b"one two\nthree\n"));
    assert_eq!(text(&response), "{\"bytes\":14,\"lines\":2,\"words\":3}\n");
}

#[test]
fn a_trap_is_a_500_and_the_others_keep_answering() {
    let response = get("/faults/trap");
    assert_failure(&response, 500, "trap");
    assert!(text(&response).contains("\"message\":\"the function trapped\""));
    // The panic message went to the log (stderr), not to the client.
    assert!(!text(&response).contains("on purpose"));
    assert!(logged("faulty/faults/faults stderr:") && logged("this function traps on purpose"));
    assert!(logged("failed with 500 (trap, Guest fault)"));
    assert_eq!(get("/acme/hello?name=Ada").status, 200);
    assert_eq!(get("/faults/ok").status, 200);
}

#[test]
fn a_loop_is_stopped_at_its_deadline() {
    let started = Instant::now();
    let response = get("/faults/loop");
    let elapsed = started.elapsed();
    assert_failure(&response, 504, "timeout");
    assert!(text(&response).contains("the function exceeded its deadline of 1s"));
    assert!(
        elapsed >= Duration::from_millis(1000),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "stopped late: {elapsed:?}"
    );
    assert_eq!(get("/acme/hello").status, 200);
}

#[test]
fn a_wait_in_a_host_call_ends_at_the_deadline() {
    // `sleep` blocks 60 s in wasi:io/poll, where no guest code runs for the epoch to stop.
    let started = Instant::now();
    let response = get("/faults/sleep");
    assert_failure(&response, 504, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_short_wait_completes() {
    let started = Instant::now();
    let response = get("/faults/nap");
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(text(&response), "rested");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn running_out_of_memory_is_a_503() {
    let response = get("/faults/oom");
    assert_failure(&response, 503, "out_of_memory");
    assert!(text(&response).contains("memory limit of 16777216 bytes"));
    assert_eq!(response.header("retry-after"), Some(&b"1"[..]));
}

#[test]
fn an_endless_response_body_is_out_of_memory() {
    // The body is collected in the host, charged to the function's memory limit.
    let response = get("/faults/huge");
    assert_failure(&response, 503, "out_of_memory");
}

#[test]
fn a_stack_overflow_is_a_trap() {
    assert_failure(&get("/faults/recurse"), 500, "trap");
}

#[test]
fn no_response_and_error_codes_are_500s() {
    assert_failure(&get("/faults/no-response"), 500, "no_response");
    assert_failure(&get("/faults/error-code"), 500, "guest_error");
    // Head sent, body cut by a panic: the Linux host would have sent the head; here nothing was
    // sent yet, so the client gets the failure.
    assert_failure(&get("/faults/trap-mid-body"), 500, "trap");
}

#[test]
fn request_bodies_are_read_and_limited() {
    let server = &fixture().server;
    let body = vec![b'x'; 64 << 10];
    let response = server.handle(request("POST", "/faults/read-all", &body));
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(text(&response), "65536");

    let too_big = vec![b'x'; (64 << 10) + 1];
    let response = server.handle(request("POST", "/faults/read-all", &too_big));
    assert_failure(&response, 413, "payload_too_large");
    assert!(text(&response).contains("exceeds the function's limit of 65536 bytes"));
    let response = server.handle(request("POST", "/acme/hello", &too_big));
    assert_failure(&response, 413, "payload_too_large");
}

#[test]
fn unknown_routes_are_404() {
    for path in ["/", "/nothing", "/acme/hellox", "/acme"] {
        let response = get(path);
        assert_failure(&response, 404, "not_found");
        assert!(text(&response).contains("no function is routed at this path"));
    }
}

#[test]
fn malformed_requests_are_400() {
    let response = fixture().server.handle(request("GET", "acme/hello", b""));
    assert_failure(&response, 400, "bad_request");
    let response = fixture().server.handle(request("G(T", "/acme/hello", b""));
    assert_failure(&response, 400, "bad_request");
    let mut bad = request("GET", "/acme/hello", b"");
    bad.headers.push(("x-bad".into(), b"a\r\nb".to_vec()));
    assert_failure(&fixture().server.handle(bad), 400, "bad_request");
}

#[test]
fn routes_are_listed_longest_first() {
    let routes: Vec<String> = fixture()
        .server
        .routes()
        .map(|route| route.to_string())
        .collect();
    assert_eq!(
        routes,
        [
            "/globex/stats -> globex/textkit/stats",
            "/globex/upper -> globex/textkit/upper",
            "/acme/hello -> acme/greeter/hello",
            "/faults -> faulty/faults/faults",
        ]
    );
}

/// A bundle holding `component` compiled without the bundler's import check.
fn unchecked_bundle(component: &str) -> Bundle {
    let engine = Engine::new(&engine_config(Execution::Pulley)).unwrap();
    let code = engine.precompile_component(&guest(component)).unwrap();
    Bundle {
        execution: Execution::Pulley,
        functions: vec![BundledFunction {
            tenant: "initech".into(),
            app: "calls".into(),
            name: "caller".into(),
            route: "/caller".into(),
            max_memory: 16 * MIB,
            timeout_ms: 1000,
            max_request_body: 1024,
            code,
        }],
    }
}

#[test]
fn outbound_http_is_refused_at_load_and_at_build() {
    let error = Server::new(&kernel_engine(), unchecked_bundle("caller"))
        .err()
        .unwrap();
    let LoadError::Unoffered { function, imports } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(function, "initech/calls/caller");
    assert_eq!(imports.len(), 1, "{imports:?}");
    assert!(
        imports[0].0.starts_with("wasi:http/outgoing-handler@0.2."),
        "{imports:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("initech/calls/caller cannot be served"),
        "{message}"
    );
    assert!(
        message.contains("outbound HTTP is not offered"),
        "{message}"
    );

    let error = compile_bundle(vec![function_caller()], Execution::Pulley)
        .err()
        .unwrap()
        .to_string();
    assert!(error.starts_with("initech/calls/caller: "), "{error}");
    assert!(
        error.contains("`wasi:http/outgoing-handler@0.2.12` (outbound HTTP"),
        "{error}"
    );
}

fn function_caller() -> BundleFunction {
    function(
        "initech",
        "calls",
        "caller",
        "/caller",
        (16 * MIB, 1000, 1024),
        "caller",
    )
}

#[test]
fn platform_imports_are_refused_at_load() {
    let error = Server::new(&kernel_engine(), unchecked_bundle("invoker"))
        .err()
        .unwrap();
    let LoadError::Unoffered { imports, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert!(
        imports
            .iter()
            .all(|(import, _)| import.starts_with("meshwa:platform/")),
        "{imports:?}"
    );
    assert!(
        error
            .to_string()
            .contains("platform services are not offered"),
        "{error}"
    );
    // All of them are named, not just the first.
    let error = Server::new(&kernel_engine(), unchecked_bundle("hopper"))
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.contains("wasi:http/outgoing-handler")
            && message.contains("meshwa:platform/invoke"),
        "{message}"
    );
}

#[test]
fn code_for_other_settings_is_refused() {
    let mut config = engine_config(Execution::Pulley);
    config.epoch_interruption(false);
    let other = Engine::new(&config).unwrap();
    let code = other.precompile_component(&guest("acme_greeter")).unwrap();
    let mut bundle = unchecked_bundle("acme_greeter");
    bundle.functions[0].code = code;
    let error = Server::new(&kernel_engine(), bundle).err().unwrap();
    assert!(matches!(error, LoadError::Deserialize { .. }), "{error}");
    assert!(error.to_string().contains("epoch interruption"), "{error}");
}

#[test]
fn what_the_test_components_import() {
    let engine = Engine::new(&engine_config(Execution::Pulley)).unwrap();
    for name in [
        "acme_greeter",
        "globex_textkit",
        "faults",
        "caller",
        "hopper",
    ] {
        let component =
            meshwa_unikernel_runtime::wasmtime::component::Component::new(&engine, guest(name))
                .unwrap();
        let imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        println!("{name}: {}", imports.join(", "));
        assert!(!imports.is_empty());
    }
}
