//! Slicing a buffer shares its bytes: shown by the function's copy counters, not assumed.

use crate::common::{get, start};
use meshwa_manifest::{FunctionId, Name};
use meshwa_test_programs as programs;

#[tokio::test]
async fn slicing_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"invoker\"\ncomponent = \"{}\"\nroute = \"/i\"\n",
            programs::INVOKER
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;

    let invoker = server
        .runtime
        .directory()
        .get(&FunctionId {
            tenant: Name::new("t").unwrap(),
            app: Name::new("a").unwrap(),
            function: Name::new("invoker").unwrap(),
        })
        .unwrap();
    let before = invoker.buffer_counters();
    let size = 1024 * 1024;
    let answer = get(server.addr, &format!("/i/slices?size={size}")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "lmnopqrstuvwxyza")
    );
    let after = invoker.buffer_counters();
    // One copy in (the buffer's creation), none for 1000 slices, 16 bytes out (the read).
    assert_eq!(after.bytes_copied_in - before.bytes_copied_in, size as u64);
    assert_eq!(after.bytes_copied_out - before.bytes_copied_out, 16);
}
