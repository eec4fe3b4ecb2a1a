//! The head a CGI program prints (untrusted guest output): an error or a status and headers,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meshwa_runtime::fuzzing::cgi_head(data);
});
