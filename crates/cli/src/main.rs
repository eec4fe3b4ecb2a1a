//! `meshwa`: the command-line entry point.

mod client;
mod serve;
mod telemetry;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a request allocates and frees many small objects on two
/// or more worker threads (the store, WASI's context, hyper's buffers), where glibc's arenas
/// spent about a tenth of the server's CPU (docs/benchmarks.md, "HTTP").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// meshwa: many tenants' WebAssembly functions in one address space, each request in a fresh
/// sandbox.
#[derive(Parser)]
#[command(name = "meshwa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: client::Connection,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at startup; `serve`'s flags are simply the most numerous"
)]
enum Command {
    /// Serve the functions of one or more apps (each a meshwa.toml, or a Spin app's spin.toml)
    /// over HTTP.
    Serve(serve::ServeArgs),
    /// Deploy (or redeploy) the app in a directory: uploads its meshwa.toml (or a Spin app's
    /// spin.toml), components and preload files.
    Deploy(client::DeployArgs),
    /// List the tenant's apps.
    Ls,
    /// Remove an app (its running requests finish first).
    Rm(client::RmArgs),
    /// Call a function (public or private) from the terminal; its answer goes to stdout.
    Invoke(client::InvokeArgs),
    /// Recent invocations and guest log lines of an app or function.
    Logs(client::LogsArgs),
    /// Show an app's recent call chains, each invocation's time drawn as a bar.
    Traces(client::TracesArgs),
    /// Manage tenants (operator token).
    #[command(subcommand)]
    Tenant(client::TenantCommand),
    /// Manage the tenant's tokens.
    #[command(subcommand)]
    Token(client::TokenCommand),
    /// The nodes of the cluster and the version of each app each one serves (operator token).
    Nodes,
}

/// Runs a client command on a small runtime of its own.
fn client_command(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let traces = match &cli.command {
        Command::Serve(args) => Some(args.traces.clone()),
        _ => None,
    };
    let telemetry = match telemetry::init(traces.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("meshwa: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let connection = cli.connection;
    let result = match cli.command {
        Command::Serve(args) => {
            let served = serve::run(args);
            telemetry.shutdown();
            served
        }
        Command::Deploy(args) => client_command(client::deploy(connection, args)),
        Command::Ls => client_command(client::ls(connection)),
        Command::Nodes => client_command(client::nodes(connection)),
        Command::Rm(args) => client_command(client::rm(connection, args)),
        Command::Invoke(args) => client_command(client::invoke(connection, args)),
        Command::Logs(args) => client_command(client::logs(connection, args)),
        Command::Traces(args) => client_command(client::traces(connection, args)),
        Command::Tenant(command) => client_command(client::tenant(connection, command)),
        Command::Token(command) => client_command(client::token(connection, command)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshwa: {error:#}");
            match error.downcast_ref::<client::ClientError>() {
                Some(client_error) => std::process::ExitCode::from(client_error.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
