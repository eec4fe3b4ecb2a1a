//! The secrets file on any text: an error or the secrets, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = meshwa_runtime::Secrets::parse(&text, Path::new("secrets.toml"));
});
