//! `meshwa serve --cluster`: several meshwa processes on a real NATS JetStream cluster.

use std::path::{Path, PathBuf};

use meshwa_cluster::testing::NatsCluster;

use super::{Served, http, programs, serve_with, write_manifest};

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
