//! `meshwa-bench kv`: key-value get and durable set from inside a guest (wasi:keyvalue on the
//! embedded store, in-process) against a native client of a local `redis-server` over loopback
//! (started and stopped by the bench, `appendfsync always`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use meshwa_runtime::{EngineSettings, Runtime};

use crate::common::{guest_timings, percentile_us, post};

#[derive(Args)]
pub struct KvArgs {
    /// The guest that runs the timed loop (`guests/services`).
    #[arg(long)]
    component: PathBuf,
    /// Operations measured per cell.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
    /// The Redis server binary for the baseline.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
}

/// A `redis-server` child on a free loopback port, killed on drop.
struct RedisServer {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts Redis with every write fsynced before it is acknowledged, as durable as meshwa's
    /// store, and waits (bounded) until it answers.
    fn start(binary: &Path) -> anyhow::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("meshwa-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = std::process::Command::new(binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (on Debian: apt-get install redis-server)",
                    binary.display()
                )
            })?;
        let server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = server.connect()
                && redis::cmd("PING").query::<String>(&mut connection).is_ok()
            {
                return Ok(server);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Times `iterations` Redis round trips of `op` from one connection; (p50, p99) in µs.
fn redis_round_trips(redis: &RedisServer, op: &str, iterations: u32) -> anyhow::Result<(f64, f64)> {
    let mut connection = redis.connect()?;
    let value = [b'v'; 100];
    redis::cmd("SET")
        .arg("bench-key")
        .arg(&value[..])
        .exec(&mut connection)?;
    let mut samples = Vec::with_capacity(iterations as usize);
    for i in 0..iterations {
        let started = Instant::now();
        if op == "set" {
            redis::cmd("SET")
                .arg(format!("bench-{}", i % 100))
                .arg(&value[..])
                .exec(&mut connection)?;
        } else {
            let got: Vec<u8> = redis::cmd("GET").arg("bench-key").query(&mut connection)?;
            std::hint::black_box(got);
        }
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    Ok((percentile_us(&samples, 0.5), percentile_us(&samples, 0.99)))
}

pub fn run(args: KvArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-kv-{}", std::process::id()));
    let redis = RedisServer::start(&args.redis_server)?;
    let result = run_with(&args, &redis, &data);
    drop(redis);
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn run_with(args: &KvArgs, redis: &RedisServer, data: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(EngineSettings::default(), data)?;
    let function = crate::common::load_kv_bench(&runtime, &args.component)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "key-value latency, 100-byte values, {} operations per cell, p50 / p99 in µs\n",
        args.iterations
    );
    println!(
        "| operation | meshwa, wasi:keyvalue from a guest (redb) | native client → redis-server, loopback | redis / meshwa at p50 |"
    );
    println!("| --- | --- | --- | --- |");
    for (op, label) in [
        ("get", "get"),
        (
            "set",
            "durable set (fsync per write; redis `appendfsync always`)",
        ),
    ] {
        let path = format!("/bench/svc/kvbench/bench?op={op}&n={}", args.iterations);
        let (status, body) = tokio.block_on(post(&function, &path))?;
        let guest = guest_timings(status, &body).with_context(|| format!("kvbench {op}"))?;
        let native = redis_round_trips(redis, op, args.iterations)?;
        println!(
            "| {label} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1}× |",
            guest.0,
            guest.1,
            native.0,
            native.1,
            native.0 / guest.0
        );
    }
    Ok(())
}
