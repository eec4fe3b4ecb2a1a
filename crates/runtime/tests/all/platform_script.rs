//! The host side of `meshwa:platform` under a hostile guest: scripts of buffer and invoke calls
//! (the `platform-script` guest) run against a real runtime through the harness the `platform`
//! fuzz target uses. Every script the fuzzer ever found interesting enough to keep
//! (`fuzz/corpus/platform`) runs here too.

use std::path::Path;

use meshwa_runtime::InvokeError;
use meshwa_test_programs as programs;

use super::platform_harness::PlatformHarness;

fn harness() -> PlatformHarness {
    PlatformHarness::new(
        Path::new(programs::PLATFORM_SCRIPT),
        Path::new(programs::ECHO),
        Path::new(programs::COMPILE_CACHE_DIR),
    )
}

/// Builds scripts op by op (the format is in `guests/platform-script`).
#[derive(Default, Clone)]
struct Script(Vec<u8>);

impl Script {
    fn new_buffer(mut self, bytes: &[u8]) -> Self {
        self.0.push(0);
        self.0.extend((bytes.len() as u16).to_le_bytes());
        self.0.push(0);
        self.0.extend(bytes);
        self
    }
    /// A buffer of `seed` repeated to `seed.len()` KiB.
    fn new_large_buffer(mut self, seed: &[u8]) -> Self {
        self.0.push(0);
        self.0.extend((seed.len() as u16).to_le_bytes());
        self.0.push(1);
        self.0.extend(seed);
        self
    }
    fn len(mut self, slot: u8) -> Self {
        self.0.extend([1, slot]);
        self
    }
    fn read(mut self, slot: u8, offset: u16, len: u16) -> Self {
        self.0.extend([2, slot]);
        self.0.extend(offset.to_le_bytes());
        self.0.extend(len.to_le_bytes());
        self
    }
    fn slice(mut self, slot: u8, offset: u16, len: u16) -> Self {
        self.0.extend([3, slot]);
        self.0.extend(offset.to_le_bytes());
        self.0.extend(len.to_le_bytes());
        self
    }
    fn drop_buffer(mut self, slot: u8) -> Self {
        self.0.extend([4, slot]);
        self
    }
    /// `target`: 0 script, 1 echo, 2 missing, 3 other/script; `headers`: 0 none, 1 good, 2 bad.
    fn call(mut self, target: u8, slot: u8, headers: u8) -> Self {
        self.0.extend([5, target, slot, headers]);
        self
    }
    fn call_all(mut self, calls: &[(u8, u8, u8)]) -> Self {
        self.0.extend([6, calls.len() as u8]);
        for &(target, slot, headers) in calls {
            self.0.extend([target, slot, headers]);
        }
        self
    }
    fn forge(mut self, handle: u32, what: u8) -> Self {
        self.0.push(7);
        self.0.extend(handle.to_le_bytes());
        self.0.push(what);
        self
    }
}

/// Runs `script` and returns its answer's lines (the script must succeed).
async fn lines(harness: &PlatformHarness, script: &Script) -> Vec<String> {
    let outcome = harness.run(&script.0).await.unwrap();
    assert_eq!(outcome.status, 200);
    String::from_utf8(outcome.body.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn each_op_of_a_script_reaches_the_host() {
    let harness = harness();
    let buffers = Script::default()
        .new_buffer(b"hello")
        .len(0)
        .read(0, 1, 3)
        .read(0, 4, 100)
        .slice(0, 1, 2)
        .len(1)
        .drop_buffer(0)
        .len(0);
    assert_eq!(
        lines(&harness, &buffers).await,
        [
            "new 5", "len 5", "read 3", "read 1", "slice 2", "len 2", "drop", "len 2"
        ]
    );

    // The payload moves to the callee; echo answers it back.
    let calls = Script::default()
        .new_buffer(b"twelve bytes")
        .call(1, 0, 1)
        .new_buffer(b"x")
        .call(2, 0, 0)
        .new_buffer(b"x")
        .call(3, 0, 0)
        .new_buffer(b"x")
        .call(1, 0, 2);
    let answers = lines(&harness, &calls).await;
    assert_eq!(answers[1], "200 12", "{answers:?}");
    assert_eq!(answers[3], "error: InvokeError::NotFound", "{answers:?}");
    assert_eq!(answers[5], "error: InvokeError::NotAllowed", "{answers:?}");
    assert!(
        answers[7].starts_with("error: InvokeError::Failed"),
        "{answers:?}"
    );

    // A nested script: the callee runs the bytes of the buffer it was handed.
    let inner = Script::default().new_buffer(b"abc").len(0);
    let nested = Script::default().new_buffer(&inner.0).call(0, 0, 0);
    let answers = lines(&harness, &nested).await;
    // The callee answered "new 3\nlen 3": 11 bytes.
    assert_eq!(answers[1], "200 11", "{answers:?}");

    // Three at once, and more than the host makes at once.
    let three = Script::default()
        .new_buffer(b"a")
        .new_buffer(b"bb")
        .new_buffer(b"ccc")
        .call_all(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
    let answers = lines(&harness, &three).await;
    let mut sizes: Vec<&str> = answers[3]
        .trim_start_matches("call-all [")
        .trim_end_matches(']')
        .split(", ")
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, ["200 1", "200 2", "200 3"], "{answers:?}");
    let too_many = Script::default().call_all(&[(1, 0, 0); 17]);
    let answers = lines(&harness, &too_many).await;
    assert_eq!(
        answers[0].matches("LimitExceeded").count(),
        17,
        "{answers:?}"
    );
}

#[tokio::test]
async fn hostile_scripts_end_their_own_instance_only() {
    let harness = harness();
    // A handle the guest made up traps it.
    let forged = Script::default().new_buffer(b"x").forge(0xdead_beef, 0);
    let error = harness.run(&forged.0).await.unwrap_err();
    assert!(matches!(error, InvokeError::Trap(_)), "{error:?}");

    // A handle dropped twice: the second drop names nothing.
    let twice = Script::default()
        .new_buffer(b"x")
        .forge(1, 2)
        .drop_buffer(0);
    let error = harness.run(&twice.0).await.unwrap_err();
    assert!(matches!(error, InvokeError::Trap(_)), "{error:?}");

    // 255 × 1 KiB × 255 buffers: over the 16 MiB the host may hold for the instance.
    let mut hoard = Script::default();
    for _ in 0..70 {
        hoard = hoard.new_large_buffer(&[7; 255]);
    }
    let error = harness.run(&hoard.0).await.unwrap_err();
    assert!(
        matches!(error, InvokeError::OutOfMemory { .. }),
        "{error:?}"
    );

    // A chain that calls itself until the depth limit, fanning out at every level.
    let mut chain = Script::default();
    for _ in 0..4 {
        chain = Script::default()
            .new_buffer(&chain.0)
            .slice(0, 0, u16::MAX)
            .call_all(&[(0, 0, 0), (0, 1, 0)]);
    }
    let outcome = harness.run(&chain.0).await.unwrap();
    assert_eq!(outcome.status, 200);

    // After all of that, a plain script still runs.
    let plain = Script::default().new_buffer(b"ok").len(0);
    assert_eq!(lines(&harness, &plain).await, ["new 2", "len 2"]);
}

#[tokio::test]
async fn every_script_of_the_fuzz_corpus_keeps_the_host_whole() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/platform");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the seeds are in {}", corpus.display());
    let harness = harness();
    for file in files {
        // The harness checks the invariants; any outcome is allowed.
        let _ = harness.run(&std::fs::read(&file).unwrap()).await;
    }
}
