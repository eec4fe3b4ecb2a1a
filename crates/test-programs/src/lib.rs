//! Paths of the guest components built from `guests/` and `examples/` by this crate's build
//! script, for tests and benchmarks. Each constant names the crate it was built from, in upper
//! case (`HELLO` is `guests/hello`, `ACME_GREETER` is `examples/acme-greeter`).

include!(concat!(env!("OUT_DIR"), "/components.rs"));
