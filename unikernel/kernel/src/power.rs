//! Stopping the machine.

/// Powers the VM off: ACPI sleep state S5 through the PIIX4 power-management block, where
/// SeaBIOS puts it on QEMU's `pc` machine (PM1a control at 0x604). QEMU exits with status 0.
pub fn power_off() -> ! {
    // SAFETY: the PM1a control register of QEMU's PIIX4; SLP_EN with SLP_TYP 0 enters S5.
    unsafe { x86_64::instructions::port::Port::<u16>::new(0x604).write(0x2000) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
