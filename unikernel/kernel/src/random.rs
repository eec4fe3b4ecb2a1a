//! Randomness for `wasi:random/random`: the CPU's RDRAND (QEMU's `-cpu ...,rdrand`, emulated
//! from the host's entropy under TCG). No fallback: a CPU without RDRAND is refused at boot,
//! because a guest asking for secure random bytes must never get predictable ones.

use core::arch::asm;

fn next() -> u64 {
    // Intel's guidance: retry a failed RDRAND (carry clear) up to ten times; more failures mean
    // a broken generator, and handing out predictable bytes instead is worse than stopping.
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: RDRAND writes one register and the carry flag; `cpu::has_rdrand` was checked
        // at boot.
        unsafe {
            asm!("rdrand {value}", "setc {ok}", value = out(reg) value, ok = out(reg_byte) ok,
                options(nomem, nostack));
        }
        if ok == 1 {
            return value;
        }
    }
    panic!("RDRAND failed ten times in a row");
}

/// Fills `buffer` with random bytes from RDRAND.
pub fn fill(buffer: &mut [u8]) {
    for chunk in buffer.chunks_mut(8) {
        let bytes = next().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}
