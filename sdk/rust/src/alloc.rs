//! [`RequestArena`]: a global allocator for functions whose instance lives for one request.
//!
//! meshwa gives every request a fresh instance and throws its whole linear memory away when the
//! request ends, so a function's allocator never needs to give memory back for long: what the
//! general-purpose allocator (dlmalloc, in Rust's standard library for WASI) spends on free lists,
//! coalescing and headers buys nothing. The arena hands out memory by bumping a pointer, frees
//! only the most recent allocation (so a `Vec` that grows last grows in place), and asks the host
//! for more memory a megabyte at a time. In the checkout of meshwa's infrastructure-tax benchmark
//! it took about 10 % of the CPU off a request (`docs/benchmarks.md`).
//!
//! The price: memory freed in the middle of a request is not reused, so the instance's memory
//! grows with everything it allocates in the request, up to the function's `max-memory` (past
//! it, the allocation fails and the request ends as out of memory, as with any allocator). Use it
//! for functions that allocate a bounded amount per request; keep the default allocator for
//! functions that stream large bodies through many short-lived buffers, or that keep an instance
//! for a long time (a `wasmtime serve` with instance reuse, say).
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: meshwa_sdk::alloc::RequestArena = meshwa_sdk::alloc::RequestArena::new();
//! ```
//!
//! **Reserved memory.** `RequestArena<N>` starts in `N` bytes of its own that are part of the
//! module's initial memory (zeroes, so they cost the component image nothing), and grows memory
//! only once those are used up. Give it what a request usually allocates: a request that fits
//! never grows memory. That matters more than it seems, because each growth makes wasmtime
//! open more of the instance's memory slot (`mprotect`), and the next instance in that slot has
//! it closed again, which makes the kernel flush the TLB of every CPU running the process: in
//! the checkout, growth and those flushes took 13.6 % of the server's CPU (`docs/benchmarks.md`).
//! The price: the `N` bytes are part of the instance's memory from the start, so they count
//! against its `max-memory` and its tenant's memory quota even when a request uses less of them
//! (untouched, they cost no physical memory).
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: meshwa_sdk::alloc::RequestArena<{ 1 << 20 }> =
//!     meshwa_sdk::alloc::RequestArena::new();
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};

/// The size of a WebAssembly page.
const PAGE: usize = 64 * 1024;

/// Memory asked for at once: fewer `memory.grow` calls into the host; pages not touched cost
/// nothing.
const CHUNK_PAGES: usize = 16;

/// A bump allocator over `RESERVED` bytes of its own, then memory grown for it alone; see the
/// module docs.
pub struct RequestArena<const RESERVED: usize = 0> {
    /// Where the arena starts: zeroes in the module's `.bss`, inside its initial memory.
    reserved: UnsafeCell<[u8; RESERVED]>,
    /// The next free byte; 0 before the first allocation.
    next: Cell<usize>,
    /// The end of the memory the arena owns.
    end: Cell<usize>,
}

// SAFETY: WebAssembly without the threads proposal runs one thread per instance, so the cells
// are never touched concurrently. The impl exists only there.
#[cfg(not(target_feature = "atomics"))]
unsafe impl<const RESERVED: usize> Sync for RequestArena<RESERVED> {}

impl<const RESERVED: usize> RequestArena<RESERVED> {
    pub const fn new() -> RequestArena<RESERVED> {
        RequestArena {
            reserved: UnsafeCell::new([0; RESERVED]),
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// Before the first allocation: the reserved bytes become the arena's first chunk.
    fn start(&self) {
        if self.next.get() == 0 && RESERVED > 0 {
            let start = self.reserved.get() as usize;
            self.next.set(start);
            self.end.set(start + RESERVED);
        }
    }

    /// Grows linear memory by enough pages for `needed` bytes; returns where the new memory
    /// starts, or `None` if the host refused (the function's `max-memory`).
    fn grow(&self, needed: usize) -> Option<usize> {
        let least = needed.div_ceil(PAGE);
        let mut pages = least.max(CHUNK_PAGES);
        let mut old_pages = core::arch::wasm32::memory_grow(0, pages);
        if old_pages == usize::MAX && pages > least {
            // Near `max-memory`, a whole chunk may not fit where the allocation still does.
            pages = least;
            old_pages = core::arch::wasm32::memory_grow(0, pages);
        }
        if old_pages == usize::MAX {
            return None;
        }
        let start = old_pages * PAGE;
        // Someone else (libc's malloc, say) may have grown memory since: start afresh there,
        // leaving the rest of the previous chunk unused.
        if start != self.end.get() {
            self.next.set(start);
        }
        self.end.set(start + pages * PAGE);
        Some(start)
    }
}

impl<const RESERVED: usize> Default for RequestArena<RESERVED> {
    fn default() -> Self {
        RequestArena::new()
    }
}

/// `at` rounded up to `align` (a power of two), or `None` on overflow.
fn align_up(at: usize, align: usize) -> Option<usize> {
    Some(at.checked_add(align - 1)? & !(align - 1))
}

// SAFETY: every block handed out lies in the arena's reserved bytes or in memory it grew for
// itself, and is never handed out twice while live: `next` only moves back over the most recent
// block, when it is freed.
unsafe impl<const RESERVED: usize> GlobalAlloc for RequestArena<RESERVED> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.start();
        let fits = |from: usize| {
            let start = align_up(from, layout.align())?;
            let end = start.checked_add(layout.size())?;
            (from != 0 && end <= self.end.get()).then_some((start, end))
        };
        let placed = fits(self.next.get()).or_else(|| {
            let worst = layout.size().checked_add(layout.align())?;
            self.grow(worst)?;
            fits(self.next.get())
        });
        match placed {
            Some((start, end)) => {
                self.next.set(end);
                start as *mut u8
            }
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the most recent block can be taken back; the rest goes with the instance.
        if (ptr as usize).wrapping_add(layout.size()) == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        // The most recent block grows or shrinks in place while the chunk has room.
        if start.wrapping_add(layout.size()) == self.next.get()
            && let Some(end) = start.checked_add(new_size)
            && end <= self.end.get()
        {
            self.next.set(end);
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size, as `GlobalAlloc::realloc` requires of
        // `new_size`.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live and distinct; the copy stays within the smaller one.
            unsafe { core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
        }
        moved
    }
}
