//! Guest logs: `wasi:logging` records and the guest's stdout/stderr, into the host's `tracing`
//! log with the function's identity and the invocation id attached (the same id as the
//! invocation's own log line and error responses).
//!
//! Every function has one [`GuestLog`], shared by all its instances: a token bucket that lets a
//! function write [`LINES_PER_SECOND`] lines a second on average (bursts up to [`BURST`]), so a
//! chatty or hostile guest cannot flood the host's log or its disk. Lines over the limit are
//! dropped and counted; the next line that gets through reports how many were dropped.
//! Lines are cut at [`MAX_LINE`] bytes, and the values of the app's secrets are replaced by
//! `[redacted]` in everything a guest logs.

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use meshwa_manifest::FunctionId;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::state::InstanceState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wasi:logging/imports",
        imports: { default: trappable },
        require_store_data_send: true,
    });
}

use bindings::wasi::logging::logging::{self, Level};

/// Average lines a second one function may log (all its instances together).
pub const LINES_PER_SECOND: f64 = 100.0;
/// Lines a function may log at once before the rate applies.
pub const BURST: f64 = 200.0;
/// Longest line kept; the rest is cut.
pub const MAX_LINE: usize = 4096;

/// One function's log sink.
pub struct GuestLog {
    id: FunctionId,
    secrets: Vec<String>,
    bucket: Mutex<Bucket>,
    recent: std::sync::Arc<super::recent::RecentLog>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

/// Where a line came from.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    Stdout,
    Stderr,
    Logging(Level),
}

pub(crate) const SERVICE: super::HostService = super::HostService {
    prefix: "wasi:logging/",
    grant: "logging = true",
    spin_grant: None,
    granted: |grants| grants.logging,
    add_to_linker: |linker| {
        bindings::wasi::logging::logging::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            linker,
            |state| state,
        )
    },
};

/// The function's log: stdout, stderr and (if granted) `wasi:logging` lines all go through it.
/// Every secret of the app is hidden in it, granted or not: a sibling may have handed it over.
pub(crate) fn resolve(
    resolving: &super::Resolving<'_>,
    recent: std::sync::Arc<super::recent::RecentLog>,
) -> Result<GuestLog, crate::LoadError> {
    let manifest = resolving.manifest;
    let mut hidden = Vec::with_capacity(manifest.secrets.len());
    for name in &manifest.secrets {
        hidden.push(resolving.secrets.value(manifest, name)?.to_owned());
    }
    Ok(GuestLog::new(resolving.id, hidden, recent))
}

impl GuestLog {
    /// A sink for `function` that hides the given secret values.
    pub(crate) fn new(
        function: &FunctionId,
        secrets: Vec<String>,
        recent: std::sync::Arc<super::recent::RecentLog>,
    ) -> GuestLog {
        GuestLog {
            id: function.clone(),
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                refilled: Instant::now(),
                dropped: 0,
            }),
            recent,
        }
    }

    /// Takes a token; returns `None` if the line must be dropped, or how many lines were dropped
    /// since the last one that got through.
    fn admit(&self) -> Option<u64> {
        // A poisoned lock only means another thread panicked mid-update of three numbers.
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.refilled = now;
        bucket.tokens = (bucket.tokens + elapsed * LINES_PER_SECOND).min(BURST);
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return None;
        }
        bucket.tokens -= 1.0;
        Some(std::mem::take(&mut bucket.dropped))
    }

    /// Logs one line of `invocation` from the guest, if the rate allows. Empty lines are
    /// kept: they are part of what the guest wrote (a blank line between paragraphs, the one
    /// Rust's panic message starts with).
    pub(crate) fn line(&self, source: Source, invocation: &str, context: &str, text: &str) {
        let Some(dropped) = self.admit() else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(
                target: "meshwa::guest",
                tenant = %self.id.tenant,
                app = %self.id.app,
                function = %self.id.function,
                dropped,
                "guest log lines dropped: over {LINES_PER_SECOND} lines/s"
            );
        }
        let message = self.clean(text);
        let context = self.clean(context);
        let stream = match source {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
            Source::Logging(_) => "wasi:logging",
        };
        self.recent.push(
            invocation,
            super::recent::RecentWhat::Log {
                stream: stream.to_owned(),
                message: message.clone(),
            },
        );
        let id = &self.id;
        macro_rules! emit {
            ($level:ident, $stream:expr) => {
                tracing::$level!(
                    target: "meshwa::guest",
                    tenant = %id.tenant,
                    app = %id.app,
                    function = %id.function,
                    invocation,
                    stream = $stream,
                    context = %context,
                    "{message}"
                )
            };
        }
        match source {
            Source::Stdout => emit!(info, "stdout"),
            Source::Stderr => emit!(warn, "stderr"),
            Source::Logging(Level::Trace) => emit!(trace, "wasi:logging"),
            Source::Logging(Level::Debug) => emit!(debug, "wasi:logging"),
            Source::Logging(Level::Info) => emit!(info, "wasi:logging"),
            Source::Logging(Level::Warn) => emit!(warn, "wasi:logging"),
            Source::Logging(Level::Error | Level::Critical) => emit!(error, "wasi:logging"),
        }
    }

    /// Cuts `text` to [`MAX_LINE`] bytes, hides secret values, and escapes control characters
    /// (`\n` as `\\n`...), so that one guest line stays one line of the server's log and
    /// cannot forge a line of another function or tenant.
    fn clean(&self, text: &str) -> String {
        let mut end = text.len().min(MAX_LINE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut line = text[..end].trim_end().to_owned();
        for secret in &self.secrets {
            if line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), "[redacted]");
            }
        }
        if line.contains(char::is_control) {
            line = line
                .chars()
                .map(|c| match c {
                    c if c.is_control() => c.escape_default().to_string(),
                    c => c.to_string(),
                })
                .collect();
        }
        line
    }
}

impl logging::Host for InstanceState {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let invocation = &self.call_context().invocation;
        self.services()
            .log
            .line(Source::Logging(level), invocation, &context, &message);
        Ok(())
    }
}

/// The guest's stdout or stderr: whole lines go to its [`GuestLog`].
///
/// One line buffer per stream and instance, shared by every output-stream handle the guest
/// gets: SDKs that call `get-stderr` for each write (`wstd::io::stderr()`, say) would otherwise
/// turn each write into a line of its own. A line ends at a newline, or at [`MAX_LINE`] bytes
/// (logged, and the rest continues as the next line), or when the instance ends (the last
/// handle, and this, are dropped with its store): nothing written is lost but to the rate limit.
pub(crate) struct GuestStdio {
    line: std::sync::Arc<StdioLine>,
}

impl GuestStdio {
    pub(crate) fn new(
        log: std::sync::Arc<GuestLog>,
        source: Source,
        invocation: std::sync::Arc<str>,
    ) -> GuestStdio {
        GuestStdio {
            line: std::sync::Arc::new(StdioLine {
                log,
                source,
                invocation,
                pending: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter(self.line.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter(self.line.clone()))
    }
}

/// The line being written to one stream of one instance; what is left is logged when the
/// instance ends.
struct StdioLine {
    log: std::sync::Arc<GuestLog>,
    source: Source,
    invocation: std::sync::Arc<str>,
    pending: Mutex<Vec<u8>>,
}

impl StdioLine {
    fn push(&self, mut bytes: &[u8]) {
        // Only this instance writes here; a poisoned lock still holds bytes worth logging.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let room = MAX_LINE - pending.len();
            // A newline right after a full line ends that line, not an empty one after it.
            let newline = bytes.iter().take(room + 1).position(|b| *b == b'\n');
            match newline {
                Some(at) => {
                    pending.extend_from_slice(&bytes[..at]);
                    self.emit(&mut pending);
                    bytes = &bytes[at + 1..];
                }
                None if bytes.len() > room => {
                    pending.extend_from_slice(&bytes[..room]);
                    self.emit(&mut pending);
                    bytes = &bytes[room..];
                }
                None => {
                    pending.extend_from_slice(bytes);
                    return;
                }
            }
        }
    }

    fn emit(&self, pending: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(pending);
        self.log.line(self.source, &self.invocation, "", &line);
        pending.clear();
    }
}

impl Drop for StdioLine {
    fn drop(&mut self) {
        let mut pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !pending.is_empty() {
            self.emit(&mut pending);
        }
    }
}

/// One output-stream handle of the guest's stdout or stderr.
struct LineWriter(std::sync::Arc<StdioLine>);

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        self.0.push(bytes);
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::services::recent::{RecentLog, RecentWhat};

    fn lines(recent: &RecentLog) -> Vec<String> {
        recent
            .latest(usize::MAX)
            .into_iter()
            .filter_map(|e| match e.what {
                RecentWhat::Log { message, .. } => Some(message),
                RecentWhat::Invocation { .. } => None,
            })
            .collect()
    }

    #[test]
    fn writes_are_joined_into_lines_and_long_lines_split_without_loss() {
        let id = FunctionId {
            tenant: "t".parse().unwrap(),
            app: "a".parse().unwrap(),
            function: "f".parse().unwrap(),
        };
        let recent = Arc::new(RecentLog::default());
        let log = Arc::new(GuestLog::new(&id, Vec::new(), recent.clone()));
        let stdio = GuestStdio::new(log, Source::Stderr, "inv".into());
        // Two handles of one stream, as an SDK that gets the stream per write has.
        let mut first = stdio.p2_stream();
        let mut second = stdio.p2_stream();
        first.write(Bytes::from_static(b"one, ")).unwrap();
        second.write(Bytes::from_static(b"two\n\nthree")).unwrap();
        drop((first, second));
        assert_eq!(
            lines(&recent),
            ["one, two", ""],
            "a line waits for its newline"
        );
        let mut long = stdio.p2_stream();
        long.write(Bytes::from(vec![b'x'; MAX_LINE - 5])).unwrap();
        // Exactly full, then the newline: one line, no empty one after it.
        long.write(Bytes::from_static(b"\n")).unwrap();
        long.write(Bytes::from(vec![b'y'; 2 * MAX_LINE + 1]))
            .unwrap();
        drop(long);
        drop(stdio);
        let got = lines(&recent);
        assert_eq!(
            got.len(),
            6,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(got[2], format!("three{}", "x".repeat(MAX_LINE - 5)));
        assert_eq!(got[3], "y".repeat(MAX_LINE));
        assert_eq!(got[4], "y".repeat(MAX_LINE));
        // The rest when the instance ends.
        assert_eq!(got[5], "y");
    }
}
