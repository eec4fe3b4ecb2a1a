//! Interrupts: CPU exceptions (fatal: printed, then the VM halts) and a 100 Hz timer.
//!
//! The timer is the legacy PIT on the legacy PIC: both exist on QEMU's `pc` machine, need a dozen
//! port writes and no ACPI tables. Its tick does two things: it advances the clock the TCP stack
//! reads, and it increments wasmtime's epoch, which is how a guest that runs past its deadline is
//! interrupted (`Store::set_epoch_deadline`, checked by the guest's code at loop heads and calls).
//!
//! Stable Rust has no `x86-interrupt` ABI, so the entry stubs are assembly: they save the registers
//! the C ABI lets a callee clobber, call a Rust function, restore and `iretq`. The kernel is built
//! soft-float (the `x86_64-unknown-none` target), so there is no SSE state to save.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::port::Port;
use x86_64::structures::idt::InterruptDescriptorTable;

/// Timer frequency. wasmtime's epoch advances once per tick: a function's deadline is rounded up
/// to whole ticks (`meshwa_unikernel_runtime::TICK_MS`).
pub const TICK_HZ: u64 = 100;
const PIT_HZ: u64 = 1_193_182;
const TIMER_VECTOR: u8 = 32;
const SPURIOUS_MASTER: u8 = 39;
const SPURIOUS_SLAVE: u8 = 47;

static TICKS: AtomicU64 = AtomicU64::new(0);
static IDT: Once<InterruptDescriptorTable> = Once::new();
/// Called on every tick once set (wasmtime's `Engine::increment_epoch`).
static ON_TICK: Once<&'static (dyn Fn() + Sync)> = Once::new();

macro_rules! exception_stub {
    ($name:literal, $vector:literal, error_code) => {
        global_asm!(concat!(
            ".global ",
            $name,
            "\n",
            $name,
            ":\n",
            "    push ",
            $vector,
            "\n",
            "    jmp exception_common\n"
        ));
    };
    ($name:literal, $vector:literal) => {
        global_asm!(concat!(
            ".global ",
            $name,
            "\n",
            $name,
            ":\n",
            "    push 0\n",
            "    push ",
            $vector,
            "\n",
            "    jmp exception_common\n"
        ));
    };
}

exception_stub!("exception_divide", 0);
exception_stub!("exception_invalid_opcode", 6);
exception_stub!("exception_double_fault", 8, error_code);
exception_stub!("exception_stack_segment", 12, error_code);
exception_stub!("exception_general_protection", 13, error_code);
exception_stub!("exception_page_fault", 14, error_code);

global_asm!(
    r#"
exception_common:
    mov rdi, rsp
    and rsp, -16
    call exception_handler
4:
    hlt
    jmp 4b

    .global timer_entry
timer_entry:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    cld
    call timer_tick
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

    .global spurious_entry
spurious_entry:
    iretq
"#
);

unsafe extern "C" {
    fn exception_divide();
    fn exception_invalid_opcode();
    fn exception_double_fault();
    fn exception_stack_segment();
    fn exception_general_protection();
    fn exception_page_fault();
    fn timer_entry();
    fn spurious_entry();
}

/// What the exception stubs leave on the stack.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
}

#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let fault_address = x86_64::registers::control::Cr2::read_raw();
    crate::println!(
        "meshwa: CPU exception {} (error code {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}",
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        fault_address
    );
    crate::power::halt_forever()
}

#[unsafe(no_mangle)]
extern "C" fn timer_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    if let Some(on_tick) = ON_TICK.get() {
        on_tick();
    }
    // SAFETY: end of interrupt to the master PIC, which raised it.
    unsafe { Port::<u8>::new(0x20).write(0x20) };
}

/// Loads the IDT, remaps the PIC above the exception vectors, starts the PIT and enables
/// interrupts.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        let address = |handler: unsafe extern "C" fn()| VirtAddr::new(handler as usize as u64);
        // SAFETY: each address is an assembly stub above that ends in `iretq` (the timer and
        // spurious stubs) or never returns (the exception stubs), and keeps the stack as the
        // CPU's interrupt frame expects.
        unsafe {
            idt.divide_error.set_handler_addr(address(exception_divide));
            idt.invalid_opcode
                .set_handler_addr(address(exception_invalid_opcode));
            idt.double_fault
                .set_handler_addr(address(exception_double_fault));
            idt.stack_segment_fault
                .set_handler_addr(address(exception_stack_segment));
            idt.general_protection_fault
                .set_handler_addr(address(exception_general_protection));
            idt.page_fault
                .set_handler_addr(address(exception_page_fault));
            idt[TIMER_VECTOR].set_handler_addr(address(timer_entry));
            idt[SPURIOUS_MASTER].set_handler_addr(address(spurious_entry));
            idt[SPURIOUS_SLAVE].set_handler_addr(address(spurious_entry));
        }
        idt
    });
    idt.load();

    let divisor = (PIT_HZ / TICK_HZ) as u16;
    // SAFETY: the 8259 PICs and the 8253 PIT on their standard ports; the sequence is the
    // documented initialization (ICW1..ICW4, then the masks; PIT channel 0, mode 2).
    unsafe {
        let mut master_command: Port<u8> = Port::new(0x20);
        let mut master_data: Port<u8> = Port::new(0x21);
        let mut slave_command: Port<u8> = Port::new(0xa0);
        let mut slave_data: Port<u8> = Port::new(0xa1);
        master_command.write(0x11);
        slave_command.write(0x11);
        master_data.write(TIMER_VECTOR);
        slave_data.write(TIMER_VECTOR + 8);
        master_data.write(4);
        slave_data.write(2);
        master_data.write(1);
        slave_data.write(1);
        master_data.write(0xfe); // only IRQ 0, the timer
        slave_data.write(0xff);

        Port::<u8>::new(0x43).write(0x34);
        let mut channel0: Port<u8> = Port::new(0x40);
        channel0.write(divisor as u8);
        channel0.write((divisor >> 8) as u8);
    }
    x86_64::instructions::interrupts::enable();
}

/// Runs `on_tick` from the timer interrupt from now on (once; later calls are ignored). It must
/// not block or allocate: it runs with interrupts off, possibly in the middle of any code.
pub fn on_tick(on_tick: &'static (dyn Fn() + Sync)) {
    ON_TICK.call_once(|| on_tick);
}

pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The time-stamp counter: the fine clock, calibrated against the PIT at boot.
pub fn rdtsc() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: rdtsc reads a counter into edx:eax and touches nothing else.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

static TSC_PER_MS: AtomicU64 = AtomicU64::new(1_000_000);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Counts TSC cycles over five timer ticks (50 ms). Needs interrupts on.
pub fn calibrate_tsc() {
    let wait_for_tick = |after: u64| {
        while ticks() <= after {
            x86_64::instructions::hlt();
        }
    };
    let start_tick = ticks();
    wait_for_tick(start_tick);
    let begin = rdtsc();
    wait_for_tick(start_tick + 5);
    let cycles = rdtsc().saturating_sub(begin);
    let per_ms = (cycles / (5 * 1000 / TICK_HZ)).max(1);
    TSC_PER_MS.store(per_ms, Ordering::Relaxed);
    TSC_AT_BOOT.store(begin, Ordering::Relaxed);
}

pub fn tsc_per_second() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed) * 1000
}

/// Nanoseconds since calibration, from the TSC.
pub fn now_ns() -> u64 {
    let cycles = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let per_ms = u128::from(TSC_PER_MS.load(Ordering::Relaxed));
    (u128::from(cycles) * 1_000_000 / per_ms) as u64
}
