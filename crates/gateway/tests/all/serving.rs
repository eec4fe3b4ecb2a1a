//! The gateway served for real: a server on a loopback port, a real HTTP client, real components
//! built from `guests/` and `examples/`.

use std::time::Duration;

use crate::common::{client, get, manifest, send, start, start_with};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshwa_gateway::ERROR_ID_HEADER;
use meshwa_test_programs as programs;

#[tokio::test]
pub(crate) async fn both_example_tenants_answer_over_http1_and_http2() {
    let server = start(&[
        programs::example_manifest("acme-greeter"),
        programs::example_manifest("globex-textkit"),
    ])
    .await;

    let hello = get(server.addr, "/acme/hello?name=Ada%20Lovelace").await;
    assert_eq!(hello.status, 200);
    assert_eq!(
        hello.body,
        "{\"greeting\":\"Hello, Ada Lovelace!\",\"tenant\":\"acme\"}\n"
    );
    assert_eq!(hello.headers["content-type"], "application/json");

    let stats = send(
        &client(),
        server.addr,
        "POST",
        "/globex/stats",
        b"one two\nthree\n",
    )
    .await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body, "{\"bytes\":14,\"lines\":2,\"words\":3}\n");

    let upper = send(
        &client(),
        server.addr,
        "POST",
        "/globex/upper",
        b"shout, please",
    )
    .await;
    assert_eq!((upper.status, upper.body.as_str()), (200, "SHOUT, PLEASE"));

    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let response = h2
        .request(
            http::Request::get(format!("http://{}/acme/hello", server.addr))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"{\"greeting\":\"Hello, world!\",\"tenant\":\"acme\"}\n"
    );
}

/// Every request of `guests/residue` counts what is left in a buffer the last request filled,
/// through both kinds of request (a POST that holds its instance while its body arrives, a GET),
/// on one slot, so that each request gets the slot the last one used. (With swap, see the CLI's
/// `swap` test.)
#[tokio::test]
pub(crate) async fn a_request_never_finds_what_the_last_one_wrote_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let residue = manifest(
        dir.path(),
        "t",
        &[("residue", programs::RESIDUE, "/residue", "")],
    );
    let server = start_with(&[residue], 1).await;
    let client = client();
    for i in 0..6 {
        let method = if i % 2 == 0 { "POST" } else { "GET" };
        let answer = send(&client, server.addr, method, "/residue", b"body").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "residue=0\n", "request {i} ({method})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn two_tenants_interleave_concurrently_and_every_request_gets_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let a = manifest(
        dir.path(),
        "tenant-a",
        &[("hello", programs::HELLO, "/a", "")],
    );
    let server = start(&[a, programs::example_manifest("globex-textkit")]).await;
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let client = client.clone();
        let addr = server.addr;
        tasks.spawn(async move {
            if i % 2 == 0 {
                let answer = send(&client, addr, "GET", &format!("/a/{i}"), b"").await;
                assert_eq!(answer.status, 200);
                // A reused instance would have counted more than one request.
                assert_eq!(
                    answer.body,
                    format!("hello from meshwa: /a/{i} (request 1 of this instance)\n")
                );
            } else {
                let text = format!("word{i} ").repeat(i as usize);
                let answer = send(&client, addr, "POST", "/globex/stats", text.as_bytes()).await;
                assert_eq!(answer.status, 200);
                assert_eq!(
                    answer.body,
                    format!("{{\"bytes\":{},\"lines\":0,\"words\":{i}}}\n", text.len())
                );
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

/// Each fault gets its status and an error id (in a header and in the body), and the server keeps
/// serving the other tenant after every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn guest_faults_are_contained_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let faults = programs::FAULTS;
    let bad = manifest(
        dir.path(),
        "mallory",
        &[
            ("trap", faults, "/m/trap", "timeout = \"5s\""),
            ("loop", faults, "/m/loop", "timeout = \"300ms\""),
            ("sleep", faults, "/m/sleep", "timeout = \"300ms\""),
            ("oom", faults, "/m/oom", "max-memory = \"8MiB\""),
            ("no-response", faults, "/m/no-response", ""),
            ("error-code", faults, "/m/error-code", ""),
        ],
    );
    let good = manifest(
        dir.path(),
        "alice",
        &[("hello", programs::HELLO, "/alice", "")],
    );
    let server = start(&[bad, good]).await;

    let cases = [
        ("/m/trap", 500, "trap"),
        ("/m/loop", 504, "timeout"),
        ("/m/sleep", 504, "timeout"),
        ("/m/oom", 503, "out_of_memory"),
        ("/m/no-response", 500, "no_response"),
        ("/m/error-code", 500, "guest_error"),
        ("/nowhere", 404, "not_found"),
    ];
    for (path, status, kind) in cases {
        let started = std::time::Instant::now();
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["error"], kind, "{path}: {}", answer.body);
        let error_id = answer.headers[ERROR_ID_HEADER].to_str().unwrap();
        assert_eq!(body["error_id"], error_id);
        if kind == "timeout" {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{path} took {:?}",
                started.elapsed()
            );
        }
        let ok = get(server.addr, "/alice").await;
        assert_eq!(ok.status, 200, "after {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_concurrent_load_never_touch_the_good_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let bad = manifest(
        dir.path(),
        "mallory",
        &[
            ("trap", programs::FAULTS, "/m/trap", ""),
            ("loop", programs::FAULTS, "/m/loop", "timeout = \"200ms\""),
            ("oom", programs::FAULTS, "/m/oom", "max-memory = \"4MiB\""),
        ],
    );
    let good = manifest(
        dir.path(),
        "alice",
        &[("hello", programs::HELLO, "/alice", "")],
    );
    let server = start(&[bad, good]).await;
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60u32 {
        let client = client.clone();
        let addr = server.addr;
        tasks.spawn(async move {
            let path = ["/m/trap", "/m/loop", "/m/oom"][i as usize % 3];
            let bad = send(&client, addr, "GET", path, b"").await;
            assert!(bad.status >= 500, "{path}");
            let good = send(&client, addr, "GET", &format!("/alice/{i}"), b"").await;
            assert_eq!(good.status, 200);
            assert!(
                good.body
                    .starts_with(&format!("hello from meshwa: /alice/{i} "))
            );
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

#[tokio::test]
async fn a_trap_after_the_response_head_cuts_the_body_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "t",
        &[
            ("f", programs::FAULTS, "/f", ""),
            ("hello", programs::HELLO, "/hello", ""),
        ],
    );
    let server = start(&[m]).await;
    let request = http::Request::get(format!("http://{}/f/trap-mid-body", server.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    // Depending on how far the head got, the client sees a failed request or a failed body,
    // never a complete-looking response.
    if let Ok(response) = client().request(request).await {
        assert_eq!(response.status(), 200);
        assert!(
            response.into_body().collect().await.is_err(),
            "the body must not end cleanly"
        );
    }
    assert_eq!(get(server.addr, "/hello").await.status, 200);
}

#[tokio::test]
async fn bodies_stream_both_ways_and_the_size_limit_gives_413() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "t",
        &[
            (
                "echo",
                programs::ECHO,
                "/echo",
                "max-request-body = \"16MiB\"",
            ),
            (
                "small",
                programs::FAULTS,
                "/small",
                "max-request-body = \"1KiB\"",
            ),
        ],
    );
    let server = start(&[m]).await;

    // 8 MiB in, 8 MiB out, larger than anything buffered on the way.
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let request = http::Request::post(format!("http://{}/echo", server.addr))
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-echo-method"], "Method::Post");
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), big.len());
    assert!(echoed == big, "echoed body differs");

    // Declared too large: refused before any instance is made.
    let answer = send(
        &client(),
        server.addr,
        "POST",
        "/small/read-all",
        &[b'x'; 2048],
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    let answer = send(
        &client(),
        server.addr,
        "POST",
        "/small/read-all",
        &[b'x'; 1024],
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "1024"));

    // Chunked (no declared length) and too large: 413 once the limit is crossed.
    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 512]))))
        .collect();
    let streaming = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("http://{}/small/read-all", server.addr))
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let response = streaming.request(request).await.unwrap();
    assert_eq!(response.status(), 413);

    // The echo guest answers 200 before it reads; when its body is cut by the limit, so is the
    // response.
    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 8 * 1024 * 1024]))))
        .collect();
    let request = http::Request::post(format!("http://{}/echo", server.addr))
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    if let Ok(response) = streaming.request(request).await {
        assert_eq!(response.status(), 200);
        assert!(response.into_body().collect().await.is_err());
    }
}

#[tokio::test]
pub(crate) async fn components_from_third_party_sdks_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "compat",
        &[
            ("wstd", programs::WSTD_HELLO, "/wstd", ""),
            ("waki", programs::WAKI_HELLO, "/waki", ""),
        ],
    );
    let server = start(&[m]).await;
    let wstd = get(server.addr, "/wstd/x").await;
    assert_eq!(
        (wstd.status, wstd.body.as_str()),
        (200, "hello from wstd: /wstd/x\n")
    );
    let waki = get(server.addr, "/waki/y").await;
    assert_eq!(
        (waki.status, waki.body.as_str()),
        (200, "hello from waki: /waki/y\n")
    );
}

/// An instance lives only as long as someone waits for its answer: when the client goes away,
/// the instance ends and frees its slot, instead of spinning until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_ends_its_instance() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "t",
        &[
            ("loop", programs::FAULTS, "/loop", "timeout = \"60s\""),
            ("hello", programs::HELLO, "/hello", "timeout = \"60s\""),
        ],
    );
    // One instance slot for the whole server.
    let server = start_with(&[m], 1).await;
    // Several rounds, each abandoning the spinning instance at a different point of its run: the
    // next request must find the slot free and its instance must instantiate (the slot is
    // released only after the abandoned instance's memory is gone, or the pool refuses it).
    for round in 0..12u64 {
        let abandoned = tokio::spawn({
            let addr = server.addr;
            async move { get(addr, "/loop/loop").await }
        });
        tokio::time::sleep(Duration::from_millis(100 + 17 * round)).await;
        abandoned.abort();
        let _ = abandoned.await;
        // The only slot must come free long before the spinning instance's 60 s deadline.
        let answer = tokio::time::timeout(Duration::from_secs(10), get(server.addr, "/hello"))
            .await
            .expect("the abandoned instance still holds the slot");
        assert_eq!((round, answer.status), (round, 200), "{}", answer.body);
    }
}

/// The bundled five-function pipeline: one public function, four private ones reached by both
/// call styles, on a payload of several KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_orders_pipeline_runs_five_functions_in_process() {
    let server = start(&[programs::example_manifest("initech-orders")]).await;
    let mut csv = String::from("sku,qty,unit_price_cents\n");
    let mut subtotal = 0u64;
    for i in 1..=400u64 {
        csv += &format!("widget-{i}, {}, {}\n", i % 7 + 1, 100 + i);
        subtotal += (i % 7 + 1) * (100 + i);
    }
    csv += "bad sku!,1,100\nWIDGET-X,0,100\nnot a line\n";
    assert!(csv.len() > 4096);
    let tax = (subtotal * 825 + 5_000) / 10_000;

    let answer = send(
        &client(),
        server.addr,
        "POST",
        "/initech/orders",
        csv.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "text/html");
    let html = &answer.body;
    assert_eq!(html.matches("<tr><td>WIDGET-").count(), 400);
    assert!(
        html.contains("<tr><td>WIDGET-7</td><td>1</td><td>1.07</td><td>1.07</td></tr>"),
        "{html}"
    );
    assert!(
        html.contains("<tr><th>rejected</th><td>3</td></tr>"),
        "{html}"
    );
    let cents = |c: u64| format!("{}.{:02}", c / 100, c % 100);
    assert!(html.contains(&format!(
        "<tr><th>subtotal</th><td>{}</td></tr>",
        cents(subtotal)
    )));
    assert!(html.contains(&format!(
        "<tr><th>total</th><td>{}</td></tr>",
        cents(subtotal + tax)
    )));

    // The private stages have no route of their own.
    assert_eq!(get(server.addr, "/parse").await.status, 404);
    assert_eq!(get(server.addr, "/initech/orders").await.status, 405);
}

/// Slowloris: clients that never finish their request head, or never send a byte, are
/// disconnected after the header read timeout (500 ms in tests), and everybody else is served
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_block_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "t", &[("hello", programs::HELLO, "/hello", "")]);
    let server = start(&[m]).await;
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Most send half a head; every fifth sends nothing at all.
        if i % 5 != 0 {
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(stream);
    }
    for i in 0..10 {
        assert_eq!(get(server.addr, &format!("/hello/{i}")).await.status, 200);
    }
    for mut stream in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow client was not disconnected");
    }
}

/// One client cannot hold every connection: beyond its cap (and the listener's) a connection is
/// closed at once, and its place is free again when one of its connections closes (issue 16,
/// item 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_client_and_in_total() {
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "t", &[("hello", programs::HELLO, "/hello", "")]);
    let config = meshwa_gateway::GatewayConfig {
        max_connections_per_client: 4,
        max_connections: 6,
        ..meshwa_gateway::GatewayConfig::default()
    };
    let server = crate::common::start_configured(
        &[m],
        meshwa_runtime::EngineSettings::default(),
        &meshwa_runtime::Secrets::default(),
        config,
    )
    .await;
    // Is this connection closed by the server at once?
    let closed_at_once = |mut stream: tokio::net::TcpStream| async move {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    };
    let connect = |from: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind((std::net::Ipv4Addr::from(from), 0).into())
            .unwrap();
        socket.connect(server.addr).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect([127, 0, 0, 1]).await);
    }
    // A fifth from the same address is closed; the client's requests wait for its own sockets.
    assert!(closed_at_once(connect([127, 0, 0, 1]).await).await);
    // Another address still gets in, up to the listener's total of 6.
    let other = connect([127, 0, 0, 2]).await;
    let last = connect([127, 0, 0, 3]).await;
    assert!(closed_at_once(connect([127, 0, 0, 4]).await).await);
    drop((other, last));
    // Closing its sockets gives a client its places back.
    held.truncate(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(server.addr, "/hello/x").await.status, 200);
}

/// Unbounded recursion overflows the guest's stack: a trap for that request only.
#[tokio::test]
async fn a_stack_overflow_is_a_trap_of_that_request_only() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "t",
        &[
            ("f", programs::FAULTS, "/f", ""),
            ("hello", programs::HELLO, "/hello", ""),
        ],
    );
    let server = start(&[m]).await;
    let answer = get(server.addr, "/f/recurse").await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(get(server.addr, "/hello").await.status, 200);
}

/// A gigantic (endless) response: it streams only as fast as its client reads, ends with an
/// error at the function's deadline (never as a complete-looking body), and meanwhile another
/// tenant's requests all succeed with the right answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigantic_response_is_cut_at_the_deadline_and_harms_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = manifest(
        dir.path(),
        "mallory",
        &[("huge", programs::FAULTS, "/m/huge", "timeout = \"1s\"")],
    );
    let good = manifest(
        dir.path(),
        "alice",
        &[("hello", programs::HELLO, "/alice", "")],
    );
    let server = start(&[bad, good]).await;

    let addr = server.addr;
    let attack = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let request = http::Request::get(format!("http://{addr}/m/huge"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut received = 0usize;
        let ended_with_error = loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        (received, ended_with_error, started.elapsed())
    });
    alice_is_served(server.addr, 50).await;
    let (received, ended_with_error, elapsed) = attack.await.unwrap();
    assert!(
        ended_with_error,
        "an endless body must end with an error, not cleanly"
    );
    assert!(received > 1 << 20, "the body streamed ({received} bytes)");
    assert!(
        elapsed < Duration::from_secs(5),
        "cut at the 1 s deadline, took {elapsed:?}"
    );
}

/// Slow-sending clients (slowloris on the body): each sends its head, then one byte of a
/// 100 kB body every 100 ms. A function reading that body (`echo`) is cut at its deadline (1 s);
/// a CGI program, whose body is read before it starts, never starts: 408 at the deadline. Either
/// way the server hangs up, and meanwhile another tenant is served, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sending_clients_end_at_the_deadline_and_harm_no_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("mallory.toml");
    std::fs::write(
        &bad,
        format!(
            "tenant = \"mallory\"\napp = \"tests\"\n\
             [[functions]]\nname = \"echo\"\ncomponent = \"{}\"\nroute = \"/m/echo\"\n\
             limits = {{ timeout = \"1s\" }}\n\
             [[functions]]\nname = \"cgi\"\nkind = \"cgi\"\ncomponent = \"{}\"\nroute = \"/m/cgi\"\n\
             limits = {{ timeout = \"1s\" }}\n",
            programs::ECHO,
            programs::C_CGI
        ),
    )
    .unwrap();
    let good = manifest(
        dir.path(),
        "alice",
        &[("hello", programs::HELLO, "/alice", "")],
    );
    let server = start(&[bad, good]).await;

    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let path = if i % 2 == 0 { "/m/echo" } else { "/m/cgi" };
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        attackers.spawn(async move {
            let started = std::time::Instant::now();
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
            write.write_all(head.as_bytes()).await.unwrap();
            // Drip at most 8 s worth of bytes; stop when the server hangs up.
            let drip = tokio::spawn(async move {
                for _ in 0..80 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if write.write_all(b"x").await.is_err() {
                        break;
                    }
                }
            });
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(8), read.read_to_end(&mut answer)).await;
            drip.abort();
            (
                path,
                read.is_ok(),
                String::from_utf8_lossy(&answer).into_owned(),
                started.elapsed(),
            )
        });
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    alice_is_served(server.addr, 50).await;

    while let Some(result) = attackers.join_next().await {
        let (path, closed, answer, elapsed) = result.unwrap();
        assert!(closed, "{path}: the server never hung up on a slow sender");
        assert!(
            elapsed < Duration::from_secs(5),
            "{path}: cut at the 1 s deadline, took {elapsed:?}"
        );
        if path == "/m/echo" {
            // The echo had begun its answer: the body is cut without its final chunk, so the
            // client cannot mistake it for a complete response.
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(!answer.ends_with("\r\n0\r\n\r\n"), "{answer}");
        } else {
            assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
            assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
        }
    }
}

/// `n` requests of the good tenant `alice` (the `hello` guest at `/alice`): every one answered,
/// and with its own answer.
async fn alice_is_served(addr: std::net::SocketAddr, n: u32) {
    for i in 0..n {
        let answer = get(addr, &format!("/alice/{i}")).await;
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .body
                .starts_with(&format!("hello from meshwa: /alice/{i} ")),
            "{}",
            answer.body
        );
    }
}
