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

/// A loopback port that was free a moment ago, below Linux's ephemeral range (32768 and up), so
/// that the client side of some other test's connection does not take it before the server
/// binds it.
fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + (rand_u32() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000")
}

/// A number different in every call and process (no randomness crate for this).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
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
    /// Starts `size` servers and waits until JetStream has a leader (at most 30 s). A server
    /// that exits at once (its port was taken meanwhile) is retried on new ports, a few times.
    /// Panics if `nats-server` cannot be started: tests that need it must fail, not skip.
    pub fn start(size: usize) -> NatsCluster {
        let mut attempt = 0;
        loop {
            attempt += 1;
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
            match cluster.wait_ready() {
                Ok(()) => return cluster,
                Err(why) if attempt < 4 && why.exited => drop(cluster),
                Err(why) => panic!("{}", why.message),
            }
        }
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
            .args(["--log"])
            .arg(server.store_dir.with_extension("log"))
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
    fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let clustered = self.servers.len() > 1;
        for server in self.servers.iter_mut().filter(|s| s.child.is_some()) {
            loop {
                let healthy = monitor(server.monitor_port, "/healthz")
                    .is_some_and(|h| h.starts_with("HTTP/1.1 200"));
                let jsz = monitor(server.monitor_port, "/jsz").unwrap_or_default();
                if healthy && (!clustered || jsz.contains("\"leader\"")) {
                    break;
                }
                let exited = server
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || Instant::now() > deadline {
                    let log = std::fs::read_to_string(server.store_dir.with_extension("log"))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(NotReady {
                        exited,
                        message: format!(
                            "nats-server on port {} {}; its log ends: {}",
                            server.client_port,
                            if exited {
                                "exited"
                            } else {
                                "has no JetStream leader after 30 s"
                            },
                            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
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
        if let Err(why) = self.wait_ready() {
            panic!("{}", why.message);
        }
    }
}

/// Why a cluster did not come up.
struct NotReady {
    /// A server exited (rather than being slow).
    exited: bool,
    message: String,
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
