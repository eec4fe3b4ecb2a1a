//! Paths of the guest components built from `guests/` and `examples/` by this crate's build
//! script, for tests and benchmarks. Each constant names the crate it was built from, in upper
//! case (`HELLO` is `guests/hello`, `ACME_GREETER` is `examples/acme-greeter`).

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// The manifest of the example app in `examples/<name>`.
pub fn example_manifest(name: &str) -> std::path::PathBuf {
    std::path::Path::new(EXAMPLES_DIR)
        .join(name)
        .join("meshwa.toml")
}
