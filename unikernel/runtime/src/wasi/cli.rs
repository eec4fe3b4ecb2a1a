//! `wasi:cli` for an HTTP function: no environment, no arguments, no working directory, an empty
//! stdin, stdout and stderr as lines in the embedder's log sink, no terminals, and `exit` as a
//! trap (the Linux host ends the invocation the same way).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, StreamError, StreamResult,
};

use super::generated::wasi::cli::{
    environment, exit, stderr, stdin, stdout, terminal_input, terminal_output, terminal_stderr,
    terminal_stdin, terminal_stdout,
};
use super::{HostState, limits, trap};
use crate::platform;

type TerminalInput = terminal_input::TerminalInput;
type TerminalOutput = terminal_output::TerminalOutput;

impl environment::Host for HostState {
    fn get_environment(&mut self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
}

impl exit::Host for HostState {
    fn exit(&mut self, status: core::result::Result<(), ()>) -> Result<()> {
        let status = if status.is_ok() { "success" } else { "failure" };
        Err(trap(format!(
            "the function called wasi:cli/exit ({status})"
        )))
    }

    fn exit_with_code(&mut self, code: u8) -> Result<()> {
        Err(trap(format!(
            "the function called wasi:cli/exit (code {code})"
        )))
    }
}

/// An stdin with nothing in it.
struct EmptyInput;

#[wasmtime_wasi_io::async_trait]
impl Pollable for EmptyInput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl InputStream for EmptyInput {
    fn read(&mut self, _size: usize) -> StreamResult<Bytes> {
        Err(StreamError::Closed)
    }
}

impl stdin::Host for HostState {
    fn get_stdin(&mut self) -> Result<Resource<DynInputStream>> {
        let stream: DynInputStream = Box::new(EmptyInput);
        Ok(self.table.push(stream)?)
    }
}

/// stdout or stderr: complete lines go to the log sink as `function stream: line`.
struct LogLines {
    function_id: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LogLines {
    /// Logs the pending line (a blank one, such as the one Rust's panic message starts with, is
    /// skipped).
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        if !text.is_empty() {
            platform::log(&format!("{} {}: {}", self.function_id, self.stream, text));
        }
        self.line.clear();
    }
}

impl Drop for LogLines {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for LogLines {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for LogLines {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        for &byte in bytes.iter() {
            if byte == b'\n' {
                self.emit();
            } else {
                self.line.push(byte);
                if self.line.len() >= limits::MAX_LOG_LINE {
                    self.emit();
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(limits::WRITE_PERMIT)
    }
}

impl HostState {
    fn log_stream(&mut self, stream: &'static str) -> Result<Resource<DynOutputStream>> {
        let lines: DynOutputStream = Box::new(LogLines {
            function_id: self.function_id.clone(),
            stream,
            line: Vec::new(),
        });
        Ok(self.table.push(lines)?)
    }
}

impl stdout::Host for HostState {
    fn get_stdout(&mut self) -> Result<Resource<DynOutputStream>> {
        self.log_stream("stdout")
    }
}

impl stderr::Host for HostState {
    fn get_stderr(&mut self) -> Result<Resource<DynOutputStream>> {
        self.log_stream("stderr")
    }
}

impl terminal_input::Host for HostState {}

impl terminal_input::HostTerminalInput for HostState {
    fn drop(&mut self, _terminal: Resource<TerminalInput>) -> Result<()> {
        Ok(())
    }
}

impl terminal_output::Host for HostState {}

impl terminal_output::HostTerminalOutput for HostState {
    fn drop(&mut self, _terminal: Resource<TerminalOutput>) -> Result<()> {
        Ok(())
    }
}

impl terminal_stdin::Host for HostState {
    fn get_terminal_stdin(&mut self) -> Result<Option<Resource<TerminalInput>>> {
        Ok(None)
    }
}

impl terminal_stdout::Host for HostState {
    fn get_terminal_stdout(&mut self) -> Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}

impl terminal_stderr::Host for HostState {
    fn get_terminal_stderr(&mut self) -> Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}
