//! The upload reader on any bytes: an archive error or the files, never a panic, and never a
//! path that could leave the staging directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meshwa_control::archive::unpack(data, |name, contents| {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|part| part == ".." || part.is_empty()),
            "unsafe path {name:?}"
        );
        std::io::copy(contents, &mut std::io::sink())
    });
});
