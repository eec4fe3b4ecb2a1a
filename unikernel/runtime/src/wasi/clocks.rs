//! `wasi:clocks` from the embedder's clocks (`platform`), and waiting on the monotonic one.
//!
//! A wait (`subscribe-duration`, `subscribe-instant`) is a pollable that is pending until the
//! clock passes its instant, asking to be polled again each time: the executor keeps polling
//! while it is, and gives up at the function's deadline (a guest blocked in `poll` runs no code
//! the epoch could interrupt). Without a clock (bare metal, none set) a wait ends at once.

use alloc::boxed::Box;
use core::future::poll_fn;
use core::task::Poll;

use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi_io::poll::{DynPollable, Pollable, subscribe};

use super::HostState;
use super::generated::wasi::clocks::{monotonic_clock, wall_clock};
use crate::platform;

/// Pending until the monotonic clock reads `until_ns`.
struct Wait {
    until_ns: u64,
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for Wait {
    async fn ready(&mut self) {
        let until_ns = self.until_ns;
        poll_fn(|context| match platform::now_ns() {
            Some(now) if now < until_ns => {
                context.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
        .await;
    }
}

impl HostState {
    fn wait_until(&mut self, until_ns: u64) -> Result<Resource<DynPollable>> {
        let wait = self.table.push(Wait { until_ns })?;
        subscribe(&mut self.table, wait)
    }
}

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> Result<u64> {
        Ok(platform::now_ns().unwrap_or(0))
    }

    fn resolution(&mut self) -> Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> Result<Resource<DynPollable>> {
        self.wait_until(when)
    }

    fn subscribe_duration(&mut self, duration: u64) -> Result<Resource<DynPollable>> {
        let now = platform::now_ns().unwrap_or(0);
        self.wait_until(now.saturating_add(duration))
    }
}

impl wall_clock::Host for HostState {
    fn now(&mut self) -> Result<wall_clock::Datetime> {
        let ns = platform::wall_ns();
        Ok(wall_clock::Datetime {
            seconds: ns / 1_000_000_000,
            nanoseconds: (ns % 1_000_000_000) as u32,
        })
    }

    fn resolution(&mut self) -> Result<wall_clock::Datetime> {
        Ok(wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1,
        })
    }
}
