//! Counting the memory-management system calls one thread makes, for the hardware report's
//! page-table section: `strace` attached to that thread (`-p TID`) for the measured requests
//! only, with the stack of each call (`-k`) so that each is put under instantiation, teardown
//! or the rest.
//!
//! Why strace: wasmtime makes these calls through rustix's raw system calls, not libc, so no
//! preload shim sees them, and the kernel keeps no per-call-kind counters a process can read;
//! tracepoints would need tracefs mounted and perf rights. strace is a Debian package
//! (`cargo xtask setup` installs it) and what a reader would use to check the figures.
//!
//! Stacks: strace's unwinder stops at the first frame without unwind information, so usually
//! only the innermost frame of the traced binary is known. In a release build (rustix's system
//! call wrappers inlined) that frame says enough: wasmtime resets a pool slot in
//! `DecommitQueue::flush` (madvise) and through its pagemap reset (the `PAGEMAP_SCAN` ioctl,
//! used for nothing else), and maps a slot in `Instance::new` or
//! `MemoryImageSlot::instantiate` (mprotect, mmap). Everything else (the allocator growing its
//! arenas, a thread's first use, and calls whose stack ends in a system call wrapper, as in a
//! debug build) is counted as "other", and reported as such.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The calls that change a process's page tables or mappings.
pub const TRACED: &str = "madvise,ioctl,mmap,munmap,mprotect";

/// Where in a fresh instance's life a call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Instantiation,
    Teardown,
    Other,
}

/// Calls counted, by phase and kind (`madvise`, `PAGEMAP_SCAN`, `mprotect`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(pub BTreeMap<(Phase, String), u64>);

impl Counts {
    /// Calls of one phase, summed over kinds.
    pub fn in_phase(&self, phase: Phase) -> u64 {
        self.0
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls of these kinds, in any phase.
    #[cfg(test)]
    pub fn of_kinds(&self, kinds: &[&str]) -> u64 {
        self.0
            .iter()
            .filter(|((_, kind), _)| kinds.contains(&kind.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// "1.0 madvise, 2.0 PAGEMAP_SCAN" per request: the calls of one phase divided by
    /// `requests`, or "none".
    pub fn per_request(&self, phase: Phase, requests: u32) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .map(|((_, kind), n)| format!("{:.1} {kind}", *n as f64 / f64::from(requests.max(1))))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A running strace attached to one thread.
pub struct Tracer {
    child: Child,
    log: PathBuf,
}

/// The kernel's id of the calling thread (not Rust's `ThreadId`).
pub fn current_thread_id() -> anyhow::Result<u32> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .with_context(|| format!("no thread id in {}", link.display()))
}

impl Tracer {
    /// Attaches strace to thread `tid`, logging to `log`; returns once strace says the thread
    /// is attached (within 10 s), so that every call after this returns is seen.
    pub fn attach(tid: u32, log: &Path) -> anyhow::Result<Tracer> {
        let mut child = Command::new("strace")
            .args(["-k", "-e", &format!("trace={TRACED}"), "-o"])
            .arg(log)
            .args(["-p", &tid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting strace (`cargo xtask setup` installs it)")?;
        let stderr = child.stderr.take().context("strace's stderr")?;
        let (attached, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !told && line.contains("attached") {
                    let _ = attached.send(Ok(()));
                    told = true;
                } else if !told {
                    let _ = attached.send(Err(line));
                    told = true;
                }
            }
        });
        let tracer = Tracer {
            child,
            log: log.to_owned(),
        };
        match seen.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(tracer),
            Ok(Err(line)) => anyhow::bail!("strace could not attach: {line}"),
            Err(_) => anyhow::bail!("strace did not attach within 10 s"),
        }
    }

    /// Detaches strace (SIGINT, as Ctrl-C would) and counts what it logged.
    pub fn finish(mut self) -> anyhow::Result<Counts> {
        let stopped = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .context("kill -INT strace")?;
        anyhow::ensure!(stopped.success(), "could not stop strace");
        self.child.wait().context("waiting for strace")?;
        let log = std::fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))?;
        Ok(count(&log))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // After `finish`, strace is already gone and this does nothing. Without it (an error
        // between attaching and finishing), strace must not outlive the measurement; the kernel
        // detaches the traced thread when its tracer is killed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the calls in strace's log (`-k` format: a line per call, then ` > ` frames).
pub fn count(log: &str) -> Counts {
    let mut counts = Counts::default();
    let mut pending: Option<(String, Vec<&str>)> = None;
    let settle = |call: Option<(String, Vec<&str>)>, counts: &mut Counts| {
        if let Some((kind, frames)) = call {
            let phase = phase_of(&kind, &frames);
            *counts.0.entry((phase, kind)).or_default() += 1;
        }
    };
    for line in log.lines() {
        if let Some(frame) = line.strip_prefix(" > ") {
            if let Some((_, frames)) = pending.as_mut() {
                frames.push(frame);
            }
            continue;
        }
        settle(pending.take(), &mut counts);
        pending = call_kind(line).map(|kind| (kind, Vec::new()));
    }
    settle(pending, &mut counts);
    counts
}

/// The kind of call a log line starts, if it starts one (`<... resumed>` lines and signals
/// do not): its name, or `PAGEMAP_SCAN` for that ioctl.
fn call_kind(line: &str) -> Option<String> {
    // `-p` logs without a pid column; `-f` would add one: skip it if present.
    let line = match line.split_once(' ') {
        Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    };
    let (name, args) = line.split_once('(')?;
    if !TRACED.split(',').any(|traced| traced == name) {
        return None;
    }
    // PAGEMAP_SCAN is _IOWR('f', 16, struct pm_scan_arg): strace 6.1 does not name it.
    if name == "ioctl" && (args.contains("PAGEMAP_SCAN") || args.contains("0x66, 0x10")) {
        return Some("PAGEMAP_SCAN".to_owned());
    }
    Some(name.to_owned())
}

fn phase_of(kind: &str, frames: &[&str]) -> Phase {
    if kind == "PAGEMAP_SCAN" {
        return Phase::Teardown;
    }
    for frame in frames {
        if ["DecommitQueue", "decommit", "pagemap", "deallocate"]
            .iter()
            .any(|marker| frame.contains(marker))
        {
            return Phase::Teardown;
        }
        if [
            "Instance::new",
            "MemoryImageSlot::instantiate",
            "map_image_at",
            "instantiate",
        ]
        .iter()
        .any(|marker| frame.contains(marker))
        {
            return Phase::Instantiation;
        }
    }
    Phase::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `strace -k -p` on a request of the Python hello (keep-resident 1 MiB).
    const LOG: &str = "\
mprotect(0x774acc07a000, 155648, PROT_READ|PROT_WRITE) = 0
 > /work/target/release/meshwa-bench(wasmtime::runtime::vm::instance::Instance::new+0x2fb) [0x18370bb]
mmap(0x774b98100000, 10485760, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, 9, 0) = 0x774b98100000
 > /lib/x86_64-linux-gnu/libc.so.6(__mmap+0x13) [0x1019b3]
 > /work/target/release/meshwa-bench(wasmtime::runtime::vm::mmap::MmapOffset::map_image_at+0x51) [0x18470bb]
mprotect(0x774aea745000, 8192, PROT_READ|PROT_WRITE) = 0
 > /work/target/release/meshwa-bench(alloc::raw_vec::RawVecInner<A>::finish_grow+0x5f) [0x1cab20f]
ioctl(3, _IOC(_IOC_READ|_IOC_WRITE, 0x66, 0x10, 0x60), 0x7f2b3f7b3e88) = 32
 > /work/target/release/meshwa-bench(rustix::ioctl::_ioctl+0xb) [0x19fb7db]
 > unexpected_backtracing_error [0xcd0000]
ioctl(3, _IOC(_IOC_READ|_IOC_WRITE, 0x66, 0x10, 0x60), 0x7f2b3f7b3fb8) = 1
 > /work/target/release/meshwa-bench(rustix::ioctl::_ioctl+0xb) [0x19fb7db]
madvise(0x774b984dc000, 8339456, MADV_DONTNEED <unfinished ...>
 > /work/target/release/meshwa-bench(wasmtime::runtime::vm::instance::allocator::pooling::decommit_queue::DecommitQueue::flush+0x1ee) [0x18503ae]
<... madvise resumed>)            = 0
--- SIGALRM {si_signo=SIGALRM} ---
ioctl(2, TCGETS, 0x7ffc94cf9e60)  = -1 ENOTTY (Inappropriate ioctl for device)
 > /lib/x86_64-linux-gnu/libc.so.6(tcgetattr+0x26) [0xfd4c6]
";

    #[test]
    fn calls_are_counted_by_kind_and_put_under_their_phase() {
        let counts = count(LOG);
        let get = |phase, kind: &str| {
            counts
                .0
                .get(&(phase, kind.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(get(Phase::Instantiation, "mprotect"), 1);
        assert_eq!(get(Phase::Instantiation, "mmap"), 1);
        assert_eq!(get(Phase::Teardown, "PAGEMAP_SCAN"), 2);
        assert_eq!(get(Phase::Teardown, "madvise"), 1);
        assert_eq!(get(Phase::Other, "mprotect"), 1);
        assert_eq!(get(Phase::Other, "ioctl"), 1);
        assert_eq!(counts.in_phase(Phase::Teardown), 3);
        assert_eq!(counts.of_kinds(&["madvise", "PAGEMAP_SCAN"]), 3);
        assert_eq!(counts.0.values().sum::<u64>(), 7);
        assert_eq!(
            counts.per_request(Phase::Teardown, 2),
            "1.0 PAGEMAP_SCAN, 0.5 madvise"
        );
        assert_eq!(
            counts.per_request(Phase::Instantiation, 1),
            "1.0 mmap, 1.0 mprotect"
        );
    }

    #[test]
    fn an_empty_log_counts_nothing() {
        assert_eq!(count(""), Counts::default());
        assert_eq!(Counts::default().per_request(Phase::Teardown, 10), "none");
    }
}
