//! The engine side of meshwa's unikernel (issue 23): a bundle of precompiled components, a small
//! `wasi:http` host, and a [`Server`] that answers each request in a fresh instance.
//!
//! The same crate builds for two places, which is why it is `no_std` with `alloc`:
//!
//! - **the kernel** (`x86_64-unknown-none`, no features): one CPU, no threads, no OS. It loads a
//!   [`Bundle`] from the boot image, makes a [`Server`], and calls [`Server::handle`] for every
//!   HTTP request its network stack parses. Its timer interrupt calls
//!   [`wasmtime::Engine::increment_epoch`] every [`TICK_MS`], which is how a function past its
//!   deadline is stopped.
//! - **Linux** (feature `std`; `compile` adds Cranelift): the bundler precompiles components for
//!   the kernel with [`compile_bundle`], and `cargo test` runs the very same server code against
//!   the repo's test components.
//!
//! What the two hosts share is not only this code but the settings: [`engine_config`] is the one
//! place that says how code is compiled (native x86_64 or Pulley bytecode, explicit bounds
//! checks, epochs), used by the bundler to compile and by the kernel to load, so they cannot
//! drift apart. Failures map
//! to statuses and JSON bodies through `meshwa-rules`, the crate the Linux host uses too.
//!
//! # Embedding
//!
//! ```rust,ignore
//! let bundle = Bundle::decode(bundle_bytes)?;
//! let engine = wasmtime::Engine::new(&meshwa_unikernel_runtime::engine_config(bundle.execution))?;
//! // Every TICK_MS (the kernel: its timer interrupt; tests: a thread):
//! //     engine.increment_epoch();
//! meshwa_unikernel_runtime::set_clock(now_ns);        // monotonic ns: clocks, host-call deadlines
//! meshwa_unikernel_runtime::set_random(fill_rdrand);  // wasi:random (traps without it)
//! meshwa_unikernel_runtime::set_log_sink(|line| println!("{line}"));
//! let server = Server::new(&engine, bundle)?;
//! let response = server.handle(request);              // per parsed HTTP request
//! ```
//!
//! Modules: [`bundle`] (the boot image's function list and its encoding), [`engine`] (the
//! shared engine settings and the deadline arithmetic), [`platform`] (what the embedder plugs
//! in: clock, randomness, log sink, and wasmtime's TLS hooks on bare metal), [`server`]
//! (routing, limits, the per-request store, failure classification), `wasi` (the host side of
//! the WASI interfaces a function may import) and `executor` (driving wasmtime's async calls to
//! completion without an async runtime).

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod bundle;
#[cfg(feature = "compile")]
mod compile;
pub mod engine;
mod executor;
pub mod platform;
pub mod server;
mod wasi;

pub use bundle::{Bundle, BundleError, BundledFunction};
#[cfg(feature = "compile")]
pub use compile::{BundleFunction, CompileError, compile_bundle};
pub use engine::{Execution, NATIVE_FEATURES, TICK_MS, deadline_ticks, engine_config};
pub use meshwa_rules;
pub use platform::{set_clock, set_log_sink, set_random, set_wall_clock};
pub use server::{LoadError, Request, Response, RouteInfo, Server};
/// The wasmtime this crate is built against, for the embedder's `Engine` (`engine_config`) and
/// `increment_epoch`.
pub use wasmtime;
