//! `meshwa-bench`: the measurements of meshwa, apart from the product binary (see
//! docs/benchmarks.md). One module per benchmark; what they share is in `common`.
//!
//! - `fresh-instance`: the per-request cost of the runtime itself (admission, new store,
//!   instantiate from the pre-instantiated component, call `wasi:http/incoming-handler`, read the
//!   response, drop), with no HTTP or sockets in the way, under several allocator settings.
//! - `native-hello`: a native hyper server that answers like the `hello` guest, the ceiling that
//!   `bench/http.sh` compares against. It uses the same hyper and tokio as the gateway.
//! - `hops`: per-hop cost of function-to-function calls against native HTTP + JSON (with
//!   `json-echo`, the native service of its baseline).
//! - `deploy`: time from `meshwa deploy` to the first successful request (cold and warm), and
//!   failed requests during back-to-back redeploys under load, against a `meshwa serve` child.
//! - `attacks`: a good tenant's latency alone and while another tenant runs each attack.
//! - `languages`: a C kernel natively and as a CGI function; Python and JavaScript hello
//!   functions against the Rust one, and where their fresh instances' time goes.
//! - `kv`: key-value get and durable set from inside a guest against a native client of a local
//!   `redis-server` (started and stopped by the bench).
//! - `density`: live instances one process can hold, with their RSS and mappings.
//! - `logic-cost`: the checkout logic of `bench/tax` looped inside one sandbox, with and without
//!   the engine's epoch checks (the native side is `bench/tax`'s own `logic-cost`).
//! - `soak`: a long run of mixed traffic at a share of the peak against a `meshwa serve` child,
//!   failing if memory, descriptors or latency drift upward or a good request fails.

mod attacks;
mod cluster;
mod common;
mod density;
mod deploy;
mod fresh_instance;
mod hardware;
mod hops;
mod kv;
mod languages;
mod layout;
mod live;
mod logic_cost;
mod native_servers;
mod soak;
mod syscalls;

use clap::{Parser, Subcommand};

/// meshwa-bench: the benchmarks of meshwa (docs/benchmarks.md).
#[derive(Parser)]
#[command(name = "meshwa-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-request cost of a fresh instance (instantiate + call + drop), p50/p99, 1 and N threads.
    FreshInstance(fresh_instance::FreshInstanceArgs),
    /// A native hyper hello server: the ceiling for HTTP throughput comparisons.
    NativeHello(native_servers::ListenArgs),
    /// Per-hop cost of a call between two functions (invoke, wasi:http) against two native
    /// processes talking HTTP/1.1 + JSON over loopback, for several payload sizes.
    Hops(hops::HopsArgs),
    /// A native microservice for the `hops` baseline: parses a JSON document with a payload
    /// string, answers its length as JSON.
    JsonEcho(native_servers::ListenArgs),
    /// A good tenant's p50/p99 alone and while another tenant attacks (loop, memory, trap,
    /// endless response, flood), over real HTTP on loopback.
    Attacks(attacks::AttacksArgs),
    /// Time from `meshwa deploy` to the first successful request, cold and warm, and requests
    /// failed during back-to-back redeploys under load.
    Deploy(deploy::DeployBenchArgs),
    /// Cost of legacy code and heavy runtimes: a C kernel natively vs as a meshwa CGI function,
    /// and fresh-instance latency of the Python and JavaScript hello functions vs the Rust one.
    Languages(languages::LanguagesArgs),
    /// What memory safety costs in software here and what hardware would buy back: bounds
    /// checks against guard regions, the page-table work of a fresh instance, protection keys;
    /// writes docs/hardware.md and its chart.
    Hardware(hardware::HardwareArgs),
    /// Key-value get and durable set latency from inside a guest (wasi:keyvalue on the embedded
    /// store) against a native Redis client over loopback (`appendfsync always`).
    Kv(kv::KvArgs),
    /// What a cluster costs: key-value latency from a guest on redb and on JetStream (1 and 3
    /// replicas) against a native async-nats client, and deploy convergence over three nodes.
    Cluster(cluster::ClusterBenchArgs),
    /// How many instances one process can hold live at once (pool slots that fit the address
    /// space, with and without MPK), and the RSS and kernel mappings each live instance costs.
    Density(density::DensityArgs),
    /// A stand-in OpenTelemetry collector for the trace rows of `bench/http.sh`: accepts every
    /// OTLP/HTTP export.
    OtlpSink(native_servers::ListenArgs),
    /// The checkout logic of `bench/tax` looped inside one sandbox (no host calls), with the
    /// engine's epoch checks and without them: what the sandbox's code costs against native.
    LogicCost(logic_cost::LogicCostArgs),
    /// Mixed traffic at a share of the measured peak for a long time, sampling the server's
    /// memory, descriptors, live instances and latency; fails on upward drift or a failed request.
    Soak(soak::SoakArgs),
}

fn main() -> std::process::ExitCode {
    // As `meshwa serve` logs: by a background thread, so an invocation never waits on stderr,
    // and not lossy. The level is `RUST_LOG`'s (the bench scripts set `warn` or `error`).
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::FreshInstance(args) => fresh_instance::run(args),
        Command::NativeHello(args) => native_servers::native_hello(args),
        Command::Hops(args) => hops::run(args),
        Command::JsonEcho(args) => native_servers::json_echo(args),
        Command::Attacks(args) => attacks::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Languages(args) => languages::run(args),
        Command::Kv(args) => kv::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Density(args) => density::run(args),
        Command::Hardware(args) => hardware::run(args),
        Command::LogicCost(args) => logic_cost::run(args),
        Command::Soak(args) => soak::run(args),
        Command::OtlpSink(args) => native_servers::otlp_sink(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshwa-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
