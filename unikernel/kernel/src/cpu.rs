//! What the CPU offers, from CPUID: RDRAND for randomness, and the x86 features wasmtime asks
//! about before it loads native code compiled to use them (`Config::detect_host_feature`; on bare
//! metal wasmtime cannot probe by itself).

use core::arch::x86_64::{__cpuid, __cpuid_count};

const LEAF_FEATURES: u32 = 1;
const LEAF_EXTENDED_FEATURES: u32 = 7;
const LEAF_EXTENDED_INFO: u32 = 0x8000_0001;

/// Whether the CPU has RDRAND (CPUID leaf 1, ECX bit 30).
pub fn has_rdrand() -> bool {
    __cpuid(LEAF_FEATURES).ecx & (1 << 30) != 0
}

/// wasmtime's feature names (`sse4.1`, ...) answered from CPUID. AVX and wider are reported
/// absent: the kernel does not enable the extended register state (XSAVE) they need.
pub fn host_feature(name: &str) -> Option<bool> {
    let basic = __cpuid(LEAF_FEATURES);
    let bit = |register: u32, bit: u32| Some(register & (1 << bit) != 0);
    match name {
        "sse3" => bit(basic.ecx, 0),
        "ssse3" => bit(basic.ecx, 9),
        "fma" => Some(false),
        "cmpxchg16b" => bit(basic.ecx, 13),
        "sse4.1" => bit(basic.ecx, 19),
        "sse4.2" => bit(basic.ecx, 20),
        "popcnt" => bit(basic.ecx, 23),
        "bmi1" => bit(__cpuid_count(LEAF_EXTENDED_FEATURES, 0).ebx, 3),
        "bmi2" => bit(__cpuid_count(LEAF_EXTENDED_FEATURES, 0).ebx, 8),
        "lzcnt" => bit(__cpuid(LEAF_EXTENDED_INFO).ecx, 5),
        name if name.starts_with("avx") => Some(false),
        _ => None,
    }
}
