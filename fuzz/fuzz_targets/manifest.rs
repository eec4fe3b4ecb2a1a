//! The manifest parsers (`meshwa.toml` and Spin's `spin.toml`) on any text: an error or a
//! manifest, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = meshwa_manifest::Manifest::parse(&text, Path::new("meshwa.toml"), Path::new(""));
    let _ =
        meshwa_manifest::Manifest::parse_spin(&text, Path::new("spin.toml"), Path::new(""), None);
});
