//! `meshwa serve --cluster`: several meshwa processes on a real NATS JetStream cluster.

use std::path::{Path, PathBuf};

use meshwa_cluster::testing::NatsCluster;

use super::{Served, client, http, programs, serve_with, write_manifest};

/// The services guest at `/t/svc`, granted a cluster-wide store and a node-local one.
fn shared_state_manifest(dir: &Path) -> PathBuf {
    write_manifest(
        dir,
        "svc.toml",
        &format!(
            r#"tenant = "t"
app = "book"

[[functions]]
name = "svc"
component = "{}"
route = "/t/svc"
[functions.grants]
key-value = ["entries", "scratch"]
config = ["greeting"]
logging = true

[config]
greeting = "hi"

[key-value.entries]
[key-value.scratch]
node-local = true
"#,
            programs::SERVICES
        ),
    )
}

/// A meshwa node of the cluster with no apps of its own, the operator's token `op-token`.
fn operator_node(dir: &Path, name: &str, nats: &str) -> Served {
    serve_with(
        &dir.join(name),
        &[],
        &["--cluster", nats, "--operator-token", "op-token"],
    )
}

/// A meshwa node of the cluster, connected to `nats` (one server's URL, or several).
fn node(dir: &Path, name: &str, manifest: &Path, nats: &str) -> Served {
    serve_with(
        &dir.join(name),
        &[manifest.to_path_buf()],
        &["--cluster", nats, "--cluster-replicas", "3"],
    )
}

#[test]
fn cluster_nodes_share_key_value_state_and_lose_no_increment() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let manifest = shared_state_manifest(dir.path());
    let nodes: Vec<Served> = (0..3)
        .map(|i| node(dir.path(), &format!("node{i}"), &manifest, &urls[i]))
        .collect();

    // Written through one node, read through another.
    let put = http(nodes[0].addr, "PUT", "/t/svc/kv/entries/greeting", b"hello");
    assert_eq!(put, (200, "ok".to_owned()));
    assert_eq!(
        http(nodes[1].addr, "GET", "/t/svc/kv/entries/greeting", b""),
        (200, "hello".to_owned())
    );
    // A node-local store is each node's own.
    assert_eq!(
        http(nodes[0].addr, "PUT", "/t/svc/kv/scratch/k", b"mine").0,
        200
    );
    assert_eq!(
        http(nodes[0].addr, "GET", "/t/svc/kv/scratch/k", b"").0,
        200
    );
    assert_eq!(
        http(nodes[1].addr, "GET", "/t/svc/kv/scratch/k", b"").0,
        404
    );

    // 3 nodes x 4 clients incrementing one counter lose no increment.
    const PER_CLIENT: usize = 10;
    std::thread::scope(|scope| {
        for client in 0..12 {
            let addr = nodes[client % 3].addr;
            scope.spawn(move || {
                for _ in 0..PER_CLIENT {
                    let (status, body) = http(addr, "POST", "/t/svc/incr/entries/hits", b"");
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
    });
    for served in &nodes {
        assert_eq!(
            http(served.addr, "GET", "/t/svc/kv/entries/hits", b""),
            (200, (12 * PER_CLIENT).to_string())
        );
    }

    // kill -9 of one meshwa node leaves the others serving the shared state.
    let mut nodes = nodes;
    let mut killed = nodes.pop().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    for served in &nodes {
        assert_eq!(
            http(served.addr, "POST", "/t/svc/incr/entries/hits", b"").0,
            200
        );
    }
    assert_eq!(
        http(nodes[0].addr, "GET", "/t/svc/kv/entries/hits", b""),
        (200, (12 * PER_CLIENT + 2).to_string())
    );
}

#[test]
fn a_node_refuses_to_start_without_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = shared_state_manifest(dir.path());
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = std::process::Command::new(super::BIN)
        .arg("serve")
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--cluster", &format!("nats://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "must not start listening");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the NATS cluster"),
        "{stderr}"
    );
}

/// `meshwa ls` of tenant `acme` on `served`: the version of `greeter`, if it is listed.
fn greeter_version(served: &Served) -> Option<u64> {
    let (code, out, err) = client(served.admin, "op-token", &["ls", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .find(|line| line.starts_with("greeter "))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
}

/// Polls `condition` for at most 30 s.
fn eventually(what: &str, condition: impl FnMut() -> bool) {
    within(30, what, condition);
}

/// Polls `condition` for at most `seconds`.
fn within(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not after {seconds} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_deploy_through_one_node_is_served_by_every_node_and_by_one_started_later() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, url: &str| operator_node(dir.path(), name, url);
    let first = start("node0", &urls[0]);
    let second = start("node1", &urls[1]);
    let app = Path::new(programs::EXAMPLES_DIR).join("acme-greeter");
    let hello = "/acme/hello?name=Ada";

    let (code, _, err) = client(first.admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = client(
        first.admin,
        "op-token",
        &["deploy", "--tenant", "acme", app.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Acknowledged once recorded in the cluster; served here at once, there once followed.
    assert_eq!(http(first.addr, "GET", hello, b"").0, 200);
    eventually("the deploy reaches the second node", || {
        http(second.addr, "GET", hello, b"").0 == 200
    });
    let version = greeter_version(&first).unwrap();
    assert_eq!(greeter_version(&second), Some(version));

    // A node started after the deploy serves it as soon as it listens.
    let third = start("node2", &urls[2]);
    assert_eq!(http(third.addr, "GET", hello, b"").0, 200);
    assert_eq!(greeter_version(&third), Some(version));

    // A redeploy through another node converges everywhere to one new version.
    let (code, out, err) = client(
        third.admin,
        "op-token",
        &["deploy", "--tenant", "acme", app.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let redeployed = greeter_version(&third).unwrap();
    assert!(redeployed > version, "{redeployed} after {version}");
    for served in [&first, &second] {
        eventually("the redeploy converges", || {
            greeter_version(served) == Some(redeployed)
        });
    }
    // The operator sees, through any node, which version each node serves: each node says so
    // as soon as it applied the change (well before its 10 s heartbeat).
    within(5, "every node says it serves the redeploy", || {
        let (status, body) = super::http_with(
            second.admin,
            "GET",
            "/v1/cluster",
            "authorization: Bearer op-token\r\n",
            b"",
        );
        assert_eq!(status, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        let nodes = view["nodes"].as_array().unwrap();
        nodes.len() == 3
            && nodes.iter().all(|node| {
                node["apps"]
                    == serde_json::json!([{ "tenant": "acme", "app": "greeter", "version": redeployed }])
            })
    });
    let (code, out, err) = client(third.admin, "op-token", &["nodes"]);
    assert_eq!(code, 0, "{err}");
    let served: Vec<&str> = out
        .lines()
        .filter(|line| line.contains("acme/greeter") && line.ends_with(&format!(" {redeployed}")))
        .collect();
    assert_eq!(served.len(), 3, "{out}");

    // A removal through any node converges too; a restarted node does not bring it back.
    drop(second);
    let (code, out, err) = client(
        first.admin,
        "op-token",
        &["rm", "--tenant", "acme", "greeter"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(http(first.addr, "GET", hello, b"").0, 404);
    eventually("the removal converges", || {
        http(third.addr, "GET", hello, b"").0 == 404
    });
    let second = start("node1", &urls[1]);
    assert_eq!(http(second.addr, "GET", hello, b"").0, 404);
    assert_eq!(greeter_version(&second), None);
}

#[test]
fn a_schedule_fires_once_per_tick_for_the_whole_cluster() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    // Every node serves the app, whose store is cluster-wide: each tick counts once.
    let manifest = super::triggers::scheduled_manifest(dir.path(), false);
    let nodes: Vec<Served> = (0..3)
        .map(|i| node(dir.path(), &format!("node{i}"), &manifest, &urls[i]))
        .collect();
    let count = || super::triggers::events(&nodes[0], "cron");
    let start = super::triggers::wait_for(count, 1);
    assert!(start >= 1, "no tick fired");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let fired = count() - start;
    // Five seconds of a schedule of one tick per second, on three nodes.
    assert!((4..=6).contains(&fired), "{fired} ticks fired in 5 s");
    let (_, log) = http(nodes[1].addr, "GET", "/t/svc/kv/events/cron-log", b"");
    let ticks: Vec<&str> = log.lines().collect();
    let mut distinct = ticks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {log}");
}

/// Tenant `t`: the services guest subscribed to `orders.*` (counting into a cluster-wide store)
/// and the publisher, granted `orders.>`. Tenant `u`: the services guest subscribed to the same
/// subject of its own.
fn messaging_manifests(dir: &Path) -> Vec<PathBuf> {
    let subscriber = |tenant: &str| {
        format!(
            r#"[[functions]]
name = "svc"
component = "{}"
route = "/{tenant}/svc"
subscribe = "orders.*"
[functions.grants]
key-value = ["events"]
config = ["greeting"]
logging = true
"#,
            programs::SERVICES
        )
    };
    vec![
        write_manifest(
            dir,
            "t.toml",
            &format!(
                r#"tenant = "t"
app = "shop"
{}
[[functions]]
name = "pub"
component = "{}"
route = "/t/pub"
[functions.grants]
publish = ["orders.>"]

[config]
greeting = "hi"
[key-value.events]
"#,
                subscriber("t"),
                programs::PUBLISHER
            ),
        ),
        write_manifest(
            dir,
            "u.toml",
            &format!(
                "tenant = \"u\"\napp = \"shop\"\n{}\n[config]\ngreeting = \"hi\"\n[key-value.events]\n",
                subscriber("u")
            ),
        ),
    ]
}

fn messages_counted(served: &Served, tenant: &str) -> u64 {
    match http(
        served.addr,
        "GET",
        &format!("/{tenant}/svc/kv/events/message"),
        b"",
    ) {
        (200, count) => count.parse().unwrap(),
        (404, _) => 0,
        other => panic!("reading the count: {other:?}"),
    }
}

#[test]
fn a_message_is_handled_once_across_the_cluster_and_only_within_its_tenant() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let manifests = messaging_manifests(dir.path());
    let nodes: Vec<Served> = (0..3)
        .map(|i| {
            serve_with(
                &dir.path().join(format!("node{i}")),
                &manifests,
                &["--cluster", &urls[i], "--cluster-replicas", "3"],
            )
        })
        .collect();
    let publish = |node: &Served, subject: &str, body: &str| {
        http(
            node.addr,
            "POST",
            &format!("/t/pub/{subject}"),
            body.as_bytes(),
        )
    };
    // Subscriptions start within a second of a node's start: probe until one arrives.
    eventually("a first message arrives", || {
        assert_eq!(publish(&nodes[0], "orders.probe", "probe").0, 200);
        std::thread::sleep(std::time::Duration::from_millis(200));
        messages_counted(&nodes[0], "t") > 0
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = messages_counted(&nodes[0], "t");

    // 30 messages through the three nodes: each handled once, by one node.
    for i in 0..30 {
        let (status, body) = publish(&nodes[i % 3], "orders.created", &format!("order {i}"));
        assert_eq!((status, body.as_str()), (200, "published"));
    }
    eventually("every message is handled", || {
        messages_counted(&nodes[1], "t") >= before + 30
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        messages_counted(&nodes[2], "t"),
        before + 30,
        "a message was handled twice"
    );
    // The event carried the subject (without the tenant) and the body. (The log is appended
    // without a transaction, so concurrent events may overwrite each other's lines.)
    let (_, log) = http(nodes[0].addr, "GET", "/t/svc/kv/events/message-log", b"");
    assert!(log.contains("orders.created order "), "{log}");
    // Tenant `u` subscribes to `orders.*` too, and saw none of `t`'s messages.
    assert_eq!(messages_counted(&nodes[0], "u"), 0);

    // Publishing is checked against the grant at each call.
    let (status, body) = publish(&nodes[0], "invoices.created", "x");
    assert_eq!(status, 403);
    assert!(body.contains("not granted"), "{body}");
}

#[test]
fn tenants_and_tokens_are_shared_and_a_revocation_reaches_every_node() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, url: &str| operator_node(dir.path(), name, url);
    let first = start("node0", &urls[0]);
    let second = start("node1", &urls[1]);
    let (code, _, err) = client(first.admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = client(
        first.admin,
        "op-token",
        &["token", "create", "--tenant", "acme"],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let (code, kept, _) = client(
        first.admin,
        "op-token",
        &["token", "create", "--tenant", "acme"],
    );
    assert_eq!(code, 0);
    let kept = kept.trim().to_owned();
    let works_on = |served: &Served, token: &str| client(served.admin, token, &["ls"]).0 == 0;

    // Issued through one node, accepted by another; the tenant exists there too.
    eventually("the token reaches the second node", || {
        works_on(&second, &token)
    });
    let (code, out, _) = client(second.admin, "op-token", &["tenant", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("acme"), "{out}");

    // Revoked through the second node: refused everywhere, the kept one still works.
    let (code, out, _) = client(second.admin, &token, &["token", "ls"]);
    assert_eq!(code, 0);
    let id = out
        .lines()
        .find_map(|line| line.split_whitespace().next().filter(|w| w.len() == 12))
        .unwrap_or_else(|| panic!("no token id in {out}"));
    let (code, out, err) = client(
        second.admin,
        "op-token",
        &["token", "revoke", "--tenant", "acme", id],
    );
    assert_eq!(code, 0, "{out}{err}");
    // (Which of the two was revoked depends on the listing's order.)
    let revoked_is_first = !works_on(&second, &token);
    let (revoked, live) = if revoked_is_first {
        (&token, &kept)
    } else {
        (&kept, &token)
    };
    assert!(!works_on(&second, revoked));
    eventually("the revocation reaches the first node", || {
        !works_on(&first, revoked)
    });
    assert!(works_on(&first, live));

    // A node started later accepts the live token and not the revoked one.
    let third = start("node2", &urls[2]);
    assert!(works_on(&third, live));
    assert!(!works_on(&third, revoked));
    // What the nodes serve is the operator's to see, not a tenant's.
    let (code, _, err) = client(third.admin, live, &["nodes"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("403") || err.to_lowercase().contains("forbidden") || err.contains("operator"),
        "{err}"
    );
}
