//! The console: COM1 (QEMU's `-serial`). Output is the kernel's log; input is the operator's
//! channel (a `shutdown` line stops the server: whoever holds the VM's console owns the VM).

use core::fmt::{self, Write};

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// Line status register: bit 0 data ready, bit 5 transmit holding register empty.
const LINE_STATUS: u16 = COM1 + 5;

pub struct Serial;

impl Serial {
    fn write_byte(byte: u8) {
        let mut status: Port<u8> = Port::new(LINE_STATUS);
        let mut data: Port<u8> = Port::new(COM1);
        // SAFETY: COM1's registers are the UART's; reading status and writing data has no
        // effect on memory.
        unsafe {
            for _ in 0..100_000 {
                if status.read() & 0x20 != 0 {
                    break;
                }
            }
            data.write(byte);
        }
    }

    /// The next byte typed on the console, if one is waiting.
    pub fn try_read() -> Option<u8> {
        let mut status: Port<u8> = Port::new(LINE_STATUS);
        let mut data: Port<u8> = Port::new(COM1);
        // SAFETY: as above; reading the data register consumes the received byte.
        unsafe { (status.read() & 1 != 0).then(|| data.read()) }
    }
}

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                Serial::write_byte(b'\r');
            }
            Serial::write_byte(byte);
        }
        Ok(())
    }
}

/// Console lines are written whole: interrupts are off while one is printed so a line from an
/// interrupt handler (there is none today) cannot interleave.
pub fn print(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = Serial.write_fmt(args);
    });
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::serial::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Collects console input into lines; `poll` returns a complete line when one arrives.
pub struct LineReader {
    line: [u8; 64],
    len: usize,
}

impl LineReader {
    pub const fn new() -> Self {
        LineReader {
            line: [0; 64],
            len: 0,
        }
    }

    pub fn poll(&mut self) -> Option<&str> {
        while let Some(byte) = Serial::try_read() {
            if byte == b'\n' || byte == b'\r' {
                let len = core::mem::take(&mut self.len);
                if len > 0 {
                    return core::str::from_utf8(&self.line[..len]).ok();
                }
            } else if self.len < self.line.len() {
                self.line[self.len] = byte;
                self.len += 1;
            }
        }
        None
    }
}
