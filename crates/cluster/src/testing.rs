//! Real NATS clusters for tests: `nats-server` processes (Debian's package) on loopback ports,
//! JetStream on, data in a temporary directory, killed when the [`NatsCluster`] is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary: `NATS_SERVER` if set, else `nats-server` on the `PATH`.
fn server_binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned())
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

struct Server {
    child: Option<Child>,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store_dir: PathBuf,
}

/// A JetStream cluster of `nats-server` processes on loopback.
pub struct NatsCluster {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` servers and waits until JetStream has a leader (at most 30 s). Panics if
    /// `nats-server` cannot be started: tests that need it must fail, not skip.
    pub fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let servers = (0..size)
            .map(|i| Server {
                child: None,
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store_dir: dir.path().join(format!("n{i}")),
            })
            .collect();
        let mut cluster = NatsCluster { servers, _dir: dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_ready();
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect();
        let size = self.servers.len();
        let server = &mut self.servers[i];
        let mut command = Command::new(server_binary());
        command
            .args(["-a", "127.0.0.1", "-p", &server.client_port.to_string()])
            .args(["-m", &server.monitor_port.to_string()])
            .args(["--name", &format!("n{i}"), "--js", "--store_dir"])
            .arg(&server.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if size > 1 {
            command
                .args(["--cluster_name", "meshwa-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", server.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (Debian package nats-server; .ci/run installs it): {e}",
                server_binary()
            )
        });
        server.child = Some(child);
    }

    /// Waits until every running server is healthy and, in a cluster, reports a JetStream meta
    /// leader.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let clustered = self.servers.len() > 1;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            loop {
                let healthy = monitor(server.monitor_port, "/healthz")
                    .is_some_and(|h| h.starts_with("HTTP/1.1 200"));
                let jsz = monitor(server.monitor_port, "/jsz").unwrap_or_default();
                if healthy && (!clustered || jsz.contains("\"leader\"")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server on port {} has no JetStream leader after 30 s: {jsz}",
                    server.client_port
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The servers' client URLs, for `--cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect()
    }

    /// `kill -9` of server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its ports and data, and waits for the cluster's leader.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// A GET of the monitoring endpoint `path`, its body.
fn monitor(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
