//! A hostile guest whose behaviour is data: the request body is a script of `meshwa:platform`
//! calls (buffers made, read, sliced, dropped, handed to calls and fan-outs, forged handles),
//! which this guest runs against the host. The `platform` fuzz target (`fuzz/`) sends it
//! fuzz-generated scripts; the runtime's test runs every script of `fuzz/corpus/platform`.
//!
//! A buffer made by the script holds bytes of the script itself, so a call to `script` (this
//! function again) runs a nested script the fuzzer wrote. Each op is one byte (`op % 8`) followed
//! by its operands; a script that ends in the middle of an op stops there.
//!
//! | op | operands | what it does |
//! |----|----------|--------------|
//! | 0 new | `len: u16`, `scale: u8` | a buffer of `len × (1 or 1024)` bytes: the next `len` bytes of the script (consumed), repeated |
//! | 1 len | `slot` | the length of a held buffer |
//! | 2 read | `slot`, `offset: u16`, `len: u16` | copies part of a buffer in |
//! | 3 slice | `slot`, `offset: u16`, `len: u16` | a new buffer sharing part of one |
//! | 4 drop | `slot` | drops a held buffer |
//! | 5 call | `target`, `slot`, `headers` | `invoke.call` with a held buffer (moved) |
//! | 6 call-all | `count`, then `target`, `slot`, `headers` per call | `invoke.call-all` (more than 16: refused) |
//! | 7 forge | `handle: u32`, `what` | uses a handle number the guest made up: a hostile guest's move; the host must trap it or answer for the buffer that number names, never more |
//!
//! `slot` picks a held buffer (modulo how many are held; none held: a new empty one). The answer is
//! 200 with one line per op's outcome.

use meshwa_sdk::{Buffer, Call, InvokeError, Request, Response, invoke, invoke_each};

/// Callees a script can name: itself (a nested script), a function that answers its body, one
/// that does not exist, and a private function of another app (not allowed).
const TARGETS: [&str; 4] = ["script", "echo", "missing", "other/script"];

/// Header sets a call can carry: none, a good one, one the host must refuse to build.
const HEADERS: [&[(&str, &str)]; 3] = [&[], &[("x-script", "1")], &[("bad header", "x")]];

struct Script<'a> {
    bytes: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }

    fn take(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }
}

/// Takes the buffer at `slot` (modulo), or makes an empty one when none is held.
fn take_buffer(held: &mut Vec<Buffer>, slot: u8) -> Buffer {
    if held.is_empty() {
        Buffer::new(&[])
    } else {
        let at = usize::from(slot) % held.len();
        held.swap_remove(at)
    }
}

fn call_outcome(outcome: Result<meshwa_sdk::InvokeResponse, InvokeError>) -> String {
    match outcome {
        Ok(answer) => format!("{} {}", answer.status, answer.body.len()),
        Err(error) => format!("error: {error:?}"),
    }
}

/// Runs the script's ops until it ends; returns one line per op.
fn run(mut script: Script<'_>) -> Vec<String> {
    let mut held: Vec<Buffer> = Vec::new();
    let mut lines = Vec::new();
    while let Some(line) = step(&mut script, &mut held) {
        lines.push(line);
    }
    lines
}

/// Runs the next op; `None` once the script ends (or ends in the middle of an op).
fn step(script: &mut Script<'_>, held: &mut Vec<Buffer>) -> Option<String> {
    let op = script.byte()?;
    let line = match op % 8 {
        0 => {
            let len = usize::from(script.u16()?);
            let scale = if script.byte()? % 2 == 0 { 1 } else { 1024 };
            let seed = script.take(len).to_vec();
            let bytes: Vec<u8> = seed.iter().copied().cycle().take(len * scale).collect();
            held.push(Buffer::new(&bytes));
            format!("new {}", bytes.len())
        }
        1 => {
            let slot = script.byte()?;
            match held.get(usize::from(slot) % held.len().max(1)) {
                Some(buffer) => format!("len {}", buffer.len()),
                None => "len none".to_owned(),
            }
        }
        2 => {
            let slot = script.byte()?;
            let (offset, len) = (script.u16()?, script.u16()?);
            match held.get(usize::from(slot) % held.len().max(1)) {
                Some(buffer) => format!("read {}", buffer.read(offset.into(), len.into()).len()),
                None => "read none".to_owned(),
            }
        }
        3 => {
            let slot = script.byte()?;
            let (offset, len) = (script.u16()?, script.u16()?);
            let slice = held
                .get(usize::from(slot) % held.len().max(1))
                .map(|buffer| buffer.slice(offset.into(), len.into()));
            match slice {
                Some(slice) => {
                    let line = format!("slice {}", slice.len());
                    held.push(slice);
                    line
                }
                None => "slice none".to_owned(),
            }
        }
        4 => {
            let slot = script.byte()?;
            drop(take_buffer(held, slot));
            "drop".to_owned()
        }
        5 => {
            let target = TARGETS[usize::from(script.byte()?) % TARGETS.len()];
            let payload = take_buffer(held, script.byte()?);
            let headers = HEADERS[usize::from(script.byte()?) % HEADERS.len()];
            call_outcome(invoke(target, "/run", payload, headers))
        }
        6 => {
            let count = script.byte()? % 20;
            let mut calls = Vec::new();
            for _ in 0..count {
                let target = TARGETS[usize::from(script.byte()?) % TARGETS.len()];
                let payload = take_buffer(held, script.byte()?);
                let headers = HEADERS[usize::from(script.byte()?) % HEADERS.len()];
                calls.push(Call {
                    function: target,
                    path: "/run",
                    payload,
                    headers,
                });
            }
            let outcomes: Vec<String> = invoke_each(calls).into_iter().map(call_outcome).collect();
            format!("call-all [{}]", outcomes.join(", "))
        }
        _ => {
            let handle = script.u32()?;
            let what = script.byte()?;
            // SAFETY (of the guest only): the handle is made up on purpose. Whatever it names,
            // the host checks it against this instance's own table; a wrong one traps this
            // instance and nothing else.
            let forged = unsafe { Buffer::from_handle(handle) };
            let line = match what % 3 {
                0 => format!("forged len {}", forged.len()),
                1 => format!("forged read {}", forged.read(0, 16).len()),
                _ => "forged drop".to_owned(),
            };
            if what % 3 == 2 {
                drop(forged);
            } else {
                // Not ours to drop: the handle may name a buffer held in `held`.
                std::mem::forget(forged);
            }
            line
        }
    };
    Some(line)
}

fn handle(request: Request) -> Response {
    let lines = run(Script {
        bytes: &request.body,
    });
    Response::new(200, lines.join("\n"))
}

meshwa_sdk::http_handler!(handle);
