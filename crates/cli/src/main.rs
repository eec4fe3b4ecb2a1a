//! `meshwa`: the command-line entry point.

mod bench;
mod serve;

use clap::{Parser, Subcommand};

/// meshwa: many tenants' WebAssembly functions in one address space, each request in a fresh
/// sandbox.
#[derive(Parser)]
#[command(name = "meshwa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the functions of one or more apps (each a meshwa.toml) over HTTP.
    Serve(serve::ServeArgs),
    /// Benchmarks that ship with meshwa (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    // Log lines are written by a background thread, so a request never waits on stderr. Not
    // lossy: under a flood the writer applies back-pressure rather than dropping lines.
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshwa: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
