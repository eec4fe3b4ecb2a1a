//! The operator's policy file on any text: an error or a policy, never a panic; a parsed policy
//! answers for any tenant name.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(policy) = meshwa_manifest::Policy::parse(&text) {
        let _ = policy.tenant("acme").max_disk;
    }
});
