//! What QEMU tells the kernel at boot (PVH `hvm_start_info`) and the heap over the free RAM.
//!
//! Everything is identity-mapped (see `boot`), so the physical addresses in the start info are
//! usable pointers. The heap is the RAM region the kernel was loaded into, from the kernel's end to
//! the region's end, minus the bundle QEMU loaded there (`-initrd`).

use core::ops::Range;

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

const START_INFO_MAGIC: u32 = 0x336e_c578;
const RAM: u32 = 1;
/// The boot page tables map the low 4 GiB; nothing above is used.
const MAPPED_END: u64 = 1 << 32;

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
struct Module {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
struct MemoryMapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// What the boot protocol handed over, read once.
pub struct Boot {
    /// The `-initrd` file: the bundle of functions.
    pub bundle: &'static [u8],
    /// The `-append` text.
    pub cmdline: &'static str,
    pub heap: Range<u64>,
}

#[derive(Debug)]
pub enum BootError {
    NotPvh,
    NoBundle,
    NoRam,
}

unsafe extern "C" {
    static __kernel_end: u8;
}

/// Reads the start info at `address` and gives the heap its RAM.
///
/// # Safety
/// `address` is what the PVH entry received in ebx, and this runs once, before any allocation.
pub unsafe fn init(address: u32) -> Result<Boot, BootError> {
    // SAFETY: the PVH protocol puts a `hvm_start_info` at this address; identity-mapped.
    let info = unsafe { &*(address as usize as *const StartInfo) };
    if info.magic != START_INFO_MAGIC {
        return Err(BootError::NotPvh);
    }
    if info.nr_modules == 0 || info.modlist_paddr == 0 {
        return Err(BootError::NoBundle);
    }
    // SAFETY: `nr_modules > 0` entries at `modlist_paddr`, written by QEMU, never freed.
    let module = unsafe { &*(info.modlist_paddr as usize as *const Module) };
    // SAFETY: QEMU loaded the module's bytes there; the heap below excludes them.
    let bundle = unsafe {
        core::slice::from_raw_parts(module.paddr as usize as *const u8, module.size as usize)
    };
    let cmdline = if info.cmdline_paddr == 0 {
        ""
    } else {
        // SAFETY: a NUL-terminated string QEMU wrote and never frees.
        let text = unsafe { core::ffi::CStr::from_ptr(info.cmdline_paddr as usize as *const _) };
        text.to_str().unwrap_or("")
    };

    // SAFETY: a symbol the linker script defines; only its address is taken.
    let kernel_end = unsafe { &__kernel_end as *const u8 as u64 };
    let entries = if info.memmap_paddr == 0 {
        &[][..]
    } else {
        // SAFETY: `memmap_entries` entries at `memmap_paddr`, written by QEMU.
        unsafe {
            core::slice::from_raw_parts(
                info.memmap_paddr as usize as *const MemoryMapEntry,
                info.memmap_entries as usize,
            )
        }
    };
    let region = entries
        .iter()
        .filter(|entry| entry.kind == RAM)
        .map(|entry| entry.addr..(entry.addr + entry.size).min(MAPPED_END))
        .find(|range| range.contains(&kernel_end))
        .ok_or(BootError::NoRam)?;
    let start = kernel_end.next_multiple_of(4096);
    let mut end = region.end;
    if (start..end).contains(&module.paddr) {
        end = module.paddr & !4095;
    }
    // Anything the start info itself and the module list live in sits below the kernel (QEMU
    // writes them in low memory); refuse to run if that ever changes.
    for at in [
        u64::from(address),
        info.modlist_paddr,
        info.memmap_paddr,
        info.cmdline_paddr,
    ] {
        if (start..end).contains(&at) {
            return Err(BootError::NoRam);
        }
    }
    if end <= start {
        return Err(BootError::NoRam);
    }
    // SAFETY: [start, end) is RAM per the memory map, above the kernel image, below the bundle,
    // identity-mapped, and used by nothing else.
    unsafe {
        HEAP.lock()
            .init(start as usize as *mut u8, (end - start) as usize)
    };
    Ok(Boot {
        bundle,
        cmdline,
        heap: start..end,
    })
}

/// Bytes of the heap in use now.
pub fn heap_used() -> usize {
    HEAP.lock().used()
}
