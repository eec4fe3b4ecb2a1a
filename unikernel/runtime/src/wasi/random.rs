//! `wasi:random` from the embedder's source (`platform::set_random`).
//!
//! `random` promises cryptographic quality, so without a source it traps (with a message naming
//! the missing hook) rather than hand out predictable bytes. `insecure` and `insecure-seed` (hash
//! map seeds) fall back to a clock-seeded generator. The length a guest asks for is capped at its
//! memory limit: the host allocates the bytes before copying them into the guest's memory.

use alloc::vec;
use alloc::vec::Vec;

use wasmtime::Result;

use super::generated::wasi::random::{insecure, insecure_seed, random};
use super::{HostState, trap};
use crate::platform;

impl HostState {
    fn random_buffer(&self, len: u64) -> Result<Vec<u8>> {
        match usize::try_from(len) {
            Ok(len) if len <= self.limiter_max_memory() => Ok(vec![0; len]),
            _ => Err(trap(
                "asked for more random bytes than the function's memory limit",
            )),
        }
    }

    fn limiter_max_memory(&self) -> usize {
        self.host_memory.limit()
    }
}

fn secure(buffer: &mut [u8]) -> Result<()> {
    platform::secure_random(buffer).ok_or_else(|| {
        trap("no source of randomness: the embedder must call meshwa_unikernel_runtime::set_random")
    })
}

impl random::Host for HostState {
    fn get_random_bytes(&mut self, len: u64) -> Result<Vec<u8>> {
        let mut bytes = self.random_buffer(len)?;
        secure(&mut bytes)?;
        Ok(bytes)
    }

    fn get_random_u64(&mut self) -> Result<u64> {
        let mut bytes = [0; 8];
        secure(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

impl insecure::Host for HostState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> Result<Vec<u8>> {
        let mut bytes = self.random_buffer(len)?;
        platform::insecure_random(&mut bytes);
        Ok(bytes)
    }

    fn get_insecure_random_u64(&mut self) -> Result<u64> {
        let mut bytes = [0; 8];
        platform::insecure_random(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }
}

impl insecure_seed::Host for HostState {
    fn insecure_seed(&mut self) -> Result<(u64, u64)> {
        let mut bytes = [0; 16];
        platform::insecure_random(&mut bytes);
        let mut low = [0; 8];
        let mut high = [0; 8];
        low.copy_from_slice(&bytes[..8]);
        high.copy_from_slice(&bytes[8..]);
        Ok((u64::from_le_bytes(low), u64::from_le_bytes(high)))
    }
}
