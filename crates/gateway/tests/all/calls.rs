//! In-process calls between functions over standard wasi:http (`<function>.<app>.internal`),
//! through a real server: reachability rules, failures, cycles and shared deadlines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{get, send, start};
use meshwa_test_programs as programs;

/// Writes `text` (a manifest) to `dir/file` with `CALLER`, `HELLO`, `FAULTS` replaced by the
/// component paths.
fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let text = text
        .replace("CALLER", programs::CALLER)
        .replace("HELLO", programs::HELLO)
        .replace("FAULTS", programs::FAULTS);
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// Tenant `t` with two apps, and tenant `u` whose app has the same name as one of t's.
fn apps(dir: &Path) -> Vec<PathBuf> {
    let shop = write(
        dir,
        "t-shop.toml",
        r#"
tenant = "t"
app = "shop"

[[functions]]
name = "front"
component = "CALLER"
route = "/t/front"
limits = { timeout = "10s" }

[[functions]]
name = "render"
component = "HELLO"

[[functions]]
name = "vault"
component = "HELLO"
callable-by = ["auditor"]

[[functions]]
name = "auditor"
component = "CALLER"
route = "/t/auditor"

[[functions]]
name = "crash"
component = "FAULTS"

[[functions]]
name = "slow"
component = "FAULTS"
limits = { timeout = "60s" }

[[functions]]
name = "hasty"
component = "CALLER"
route = "/t/hasty"
limits = { timeout = "400ms" }
"#,
    );
    let blog = write(
        dir,
        "t-blog.toml",
        r#"
tenant = "t"
app = "blog"

[[functions]]
name = "public"
component = "HELLO"
route = "/t/blog"

[[functions]]
name = "draft"
component = "HELLO"
"#,
    );
    let other = write(
        dir,
        "u-shop.toml",
        r#"
tenant = "u"
app = "shop"

[[functions]]
name = "front"
component = "CALLER"
route = "/u/front"

[[functions]]
name = "secret"
component = "HELLO"
"#,
    );
    vec![shop, blog, other]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_function_calls_a_private_sibling_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let answer = get(server.addr, "/t/front/call/render.shop.internal/page?x=1").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        "hello from meshwa: /page (request 1 of this instance)\n"
    );
    // Private: no route of its own.
    assert_eq!(get(server.addr, "/render").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_body_reaches_the_callee() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let body = vec![b'z'; 100_000];
    let answer = send(
        &crate::common::client(),
        server.addr,
        "POST",
        "/t/front/call/crash.shop.internal/read-all",
        &body,
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "100000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_call_whom() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let cases = [
        // callable-by lists only `auditor`.
        (
            "/t/front/call/vault.shop.internal/",
            502,
            "error: ErrorCode::HttpRequestDenied",
        ),
        (
            "/t/auditor/call/vault.shop.internal/v",
            200,
            "hello from meshwa: /v",
        ),
        // Another app of the same tenant: public functions only.
        (
            "/t/front/call/public.blog.internal/p",
            200,
            "hello from meshwa: /p",
        ),
        (
            "/t/front/call/draft.blog.internal/",
            502,
            "error: ErrorCode::HttpRequestDenied",
        ),
        // Other tenants do not exist for the caller, even with the same app name.
        (
            "/t/front/call/secret.shop.internal/",
            502,
            "error: ErrorCode::DestinationNotFound",
        ),
        (
            "/u/front/call/render.shop.internal/",
            502,
            "error: ErrorCode::DestinationNotFound",
        ),
        (
            "/u/front/call/secret.shop.internal/s",
            200,
            "hello from meshwa: /s",
        ),
        (
            "/t/front/call/nobody.shop.internal/",
            502,
            "error: ErrorCode::DestinationNotFound",
        ),
        (
            "/t/front/call/Bad_Name.shop.internal/",
            502,
            "error: ErrorCode::DestinationNotFound",
        ),
    ];
    for (path, status, body) in cases {
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.starts_with(body), "{path}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_callee_is_a_5xx_answer_for_the_caller_not_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let answer = get(server.addr, "/t/front/call/crash.shop.internal/trap").await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"], "trap");
    // The caller survived its callee's trap and relayed its answer.
    assert_eq!(
        get(server.addr, "/t/front/call/render.shop.internal/")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_ends_with_loop_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let started = Instant::now();
    let answer = get(server.addr, "/t/front/cycle/front.shop.internal").await;
    // The deepest caller gets loop-detected and answers 502; every ancestor relays that answer.
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body, "error: ErrorCode::LoopDetected");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_chain_shares_the_deadline_of_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let started = Instant::now();
    // `hasty` has 400 ms; the `slow` callee would allow itself 60 s, but gets the rest of
    // hasty's budget. The callee times out, and so does the request as a whole.
    let answer = get(server.addr, "/t/hasty/call/slow.shop.internal/sleep").await;
    let elapsed = started.elapsed();
    assert!(
        answer.status == 504 || answer.status == 502,
        "{}: {}",
        answer.status,
        answer.body
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_names_never_open_a_socket_and_other_hosts_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    // A listener that would see any connection the host made on the function's behalf.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let answer = get(server.addr, &format!("/t/front/call/127.0.0.1:{port}/x")).await;
    // The guest sees wasi:http's standard code (the origin goes to the server's log).
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (502, "error: ErrorCode::HttpRequestDenied")
    );
    let answer = get(server.addr, "/t/front/call/render.shop.internal/").await;
    assert_eq!(answer.status, 200);
    assert!(
        listener.accept().is_err(),
        "no connection may reach the network on a function's behalf"
    );
}

/// One instance may have at most `MAX_CONCURRENT_CALLS` in-process calls in flight; the rest
/// fail at once with `connection-limit-reached`, and the ones in flight are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_has_a_bounded_number_of_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "fan.toml",
        r#"
tenant = "t"
app = "a"

[[functions]]
name = "fan"
component = "CALLER"
route = "/fan"
limits = { timeout = "3s" }

[[functions]]
name = "slow"
component = "FAULTS"
limits = { timeout = "500ms" }
"#,
    );
    let server = crate::common::start_with(&[manifest], 64).await;
    let max = meshwa_runtime::MAX_CONCURRENT_CALLS as usize;
    let answer = get(
        server.addr,
        &format!("/fan/burst/{}/slow.a.internal/sleep", max + 4),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines: Vec<&str> = answer.body.lines().collect();
    assert_eq!(lines.len(), max + 4, "{}", answer.body);
    let limited = lines
        .iter()
        .filter(|l| **l == "error: ErrorCode::ConnectionLimitReached")
        .count();
    let timed_out = lines.iter().filter(|l| **l == "504").count();
    assert_eq!((timed_out, limited), (max, 4), "{}", answer.body);
    // Their slots came back: the next burst gets as far.
    let again = get(server.addr, "/fan/burst/2/slow.a.internal/sleep").await;
    assert_eq!(again.body, "504\n504\n", "{}", again.body);
}
