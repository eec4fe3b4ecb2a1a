//! `cargo xtask cluster`: a three-node meshwa cluster on a three-server NATS JetStream cluster,
//! all on loopback, with the example apps deployed through the first node.
//!
//! Ports: NATS clients 4222–4224 (routes 6222–6224, monitoring 8222–8224); meshwa gateways
//! 3000, 3010, 3020 and admin listeners 3001, 3011, 3021. Everything lives under
//! `target/cluster` (removed at each start), the operator token is `target/cluster/operator.token`.
//! Ctrl-C stops every process (they share the terminal's process group); so does the end of any
//! one of them, which this task then reports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const NODES: usize = 3;

/// Children killed when the task ends, however it ends.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    let meshwa = root.join("target/release/meshwa");
    let dir = root.join("target/cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let token = "cluster-operator-token";
    std::fs::write(dir.join("operator.token"), token)?;
    let mut children = Children(Vec::new());

    let routes: Vec<String> = (0..NODES)
        .map(|i| format!("nats://127.0.0.1:{}", 6222 + i))
        .collect();
    for i in 0..NODES {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &(4222 + i).to_string()])
            .args([
                "-m",
                &(8222 + i).to_string(),
                "--name",
                &format!("nats-{i}"),
            ])
            .args(["--js", "--store_dir"])
            .arg(dir.join(format!("nats-{i}")))
            .args(["--cluster_name", "meshwa"])
            .args(["--cluster", &routes[i], "--routes", &routes.join(",")])
            .arg("--log")
            .arg(dir.join(format!("nats-{i}.log")))
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start nats-server (`cargo xtask setup` installs it)")?;
        children.0.push((format!("nats-server {i}"), child));
    }
    wait_for("a JetStream leader", Duration::from_secs(30), || {
        http_get(8222, "/jsz").is_some_and(|jsz| jsz.contains("\"leader\""))
    })?;

    for i in 0..NODES {
        let log = std::fs::File::create(dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&meshwa)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", 3000 + 10 * i)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", 3001 + 10 * i)])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{i}")))
            .arg("--operator-token-file")
            .arg(dir.join("operator.token"))
            .arg("--secrets-file")
            .arg(root.join("examples/secrets.toml"))
            .arg("--policy")
            .arg(root.join("examples/policy.toml"))
            .args(["--cluster", &format!("nats://127.0.0.1:{}", 4222 + i)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", meshwa.display()))?;
        children.0.push((format!("meshwa node {i}"), child));
        // A node listens once it serves what the cluster has deployed.
        let gateway = ("127.0.0.1", 3000 + 10 * i as u16);
        wait_for(
            &format!("meshwa node {i}"),
            Duration::from_secs(120),
            || std::net::TcpStream::connect(gateway).is_ok(),
        )?;
    }

    let first_admin = "http://127.0.0.1:3001";
    for (tenant, app_dir) in example_apps(root)? {
        let client = |args: &[&str]| -> anyhow::Result<String> {
            let output = Command::new(&meshwa)
                .args(args)
                .env("MESHWA_SERVER", first_admin)
                .env("MESHWA_TOKEN", token)
                .env("MESHWA_TENANT", &tenant)
                .env("MESHWA_CONFIG", "/nonexistent")
                .output()?;
            if !output.status.success() {
                bail!(
                    "meshwa {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        // The tenant may exist already (two examples of one tenant).
        let _ = client(&["tenant", "create", &tenant]);
        let deployed = client(&["deploy", &app_dir.to_string_lossy()])?;
        println!("{deployed}");
    }

    println!();
    println!("meshwa cluster: 3 nodes on 3 NATS JetStream servers, on loopback");
    for i in 0..NODES {
        println!(
            "  node {i}: functions on http://127.0.0.1:{}, control plane on http://127.0.0.1:{}, NATS nats://127.0.0.1:{}",
            3000 + 10 * i,
            3001 + 10 * i,
            4222 + i
        );
    }
    println!(
        "  try:      curl 'http://127.0.0.1:3010/acme/hello?name=Ada'   (deployed through node 0)"
    );
    println!(
        "  operator: MESHWA_SERVER=http://127.0.0.1:3021 MESHWA_TOKEN={token} meshwa tenant ls"
    );
    println!("  logs and data: {}", dir.display());
    println!("Ctrl-C stops them all.");

    // Until one of them ends (Ctrl-C ends them all).
    loop {
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} stopped ({status}); stopping the others");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(tenant, directory)` of every example app with a meshwa.toml.
fn example_apps(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut apps = Vec::new();
    for entry in std::fs::read_dir(root.join("examples"))?.flatten() {
        let manifest = entry.path().join("meshwa.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let tenant = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("tenant"))
            .and_then(|rest| rest.split('"').nth(1))
            .with_context(|| format!("{}: no tenant", manifest.display()))?;
        apps.push((tenant.to_owned(), entry.path()));
    }
    apps.sort();
    Ok(apps)
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what}: not ready after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The body of `GET path` on a loopback port, if it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}
