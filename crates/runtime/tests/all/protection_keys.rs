//! Memory protection keys (MPK) and the threads that serve: with MPK on a CPU with `pku`,
//! wasmtime colours each pooled memory with a key, and a thread may touch that memory only while
//! its PKRU register allows the key. A server's worker threads exist before the engine does, and
//! any of them may run a guest and tear its instance down. These tests ask for MPK where the
//! machine has it (and say so by their assertions on the engine's facts); on a machine without,
//! they run the same paths without it. `--mpk auto` takes MPK only for a pool too large for the
//! address space without it: the last test checks that choice.

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use meshwa_manifest::Manifest;
use meshwa_runtime::{
    AllocatorChoice, BodyError, EngineSettings, MpkChoice, Runtime, Secrets, build_engine,
    mpk_available,
};
use meshwa_test_programs as programs;

#[test]
fn threads_made_before_the_engine_serve_and_tear_instances_down() {
    // The workers first, as `meshwa serve` makes them: their PKRU is Linux's default, which
    // denies every protection key but 0.
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    // Made on another thread than the test's, so that no thread the workers came from has seen it.
    let runtime = {
        let dir = data.path().to_owned();
        std::thread::spawn(move || Runtime::new(mpk_where_available(), &dir))
            .join()
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        runtime.facts().mpk,
        mpk_available(),
        "the engine uses MPK exactly where the machine has it"
    );
    let manifest = Manifest::parse(
        &format!(
            "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = {:?}\n",
            programs::HELLO
        ),
        Path::new("m.toml"),
        Path::new("/"),
    )
    .unwrap();
    let function = runtime
        .load_app(&manifest, &Secrets::default())
        .unwrap()
        .remove(0);
    workers.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8 {
            let function = function.clone();
            // Spawned: the requests run (and end) on the worker threads, not on this one.
            tasks.spawn(async move {
                for i in 0..25 {
                    let request = http::Request::get(format!("http://localhost/{task}/{i}"))
                        .body(
                            Empty::<Bytes>::new()
                                .map_err(|never: Infallible| -> BodyError { match never {} }),
                        )
                        .unwrap();
                    let response = function.handle(request, "test").await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    assert!(body.starts_with(b"hello"), "{body:?}");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
}

/// Keys x86 offers besides key 0 (which every thread may use): wasmtime stripes the pool with at
/// most this many.
const STRIPES_AT_MOST: usize = 15;

/// With MPK, wasmtime divides the pool's memories into stripes, one per key, and gives each new
/// store the next stripe in turn, whether or not that stripe has room. Requests that stay (here:
/// streams the test keeps open) arriving in step with the stripes, between requests that come and
/// go, all land in one stripe and fill it while the others are nearly empty. Every request the
/// pool admitted must still get its instance; without MPK this is plain pool capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_stay_all_get_an_instance_however_they_fall_on_the_stripes() {
    const STAYING: usize = 30;
    let data = tempfile::tempdir().unwrap();
    let settings = EngineSettings {
        max_instances: 64,
        tenant_max_instances: Some(64),
        ..mpk_where_available()
    };
    let runtime = Runtime::new(settings, data.path()).unwrap();
    assert_eq!(runtime.facts().mpk, mpk_available());
    let manifest = Manifest::parse(
        &format!(
            "tenant = \"t\"\napp = \"a\"\n\
             [[functions]]\nname = \"echo\"\ncomponent = {:?}\n\
             [[functions]]\nname = \"hello\"\ncomponent = {:?}\n",
            programs::ECHO,
            programs::HELLO
        ),
        Path::new("m.toml"),
        Path::new("/"),
    )
    .unwrap();
    let mut functions = runtime.load_app(&manifest, &Secrets::default()).unwrap();
    let hello = functions.pop().unwrap();
    let echo = functions.pop().unwrap();
    assert_eq!(echo.id().function.as_str(), "echo");

    let mut staying = Vec::new();
    for stay in 0..STAYING {
        // One request that stays: the echo guest answers at once and streams the body back for
        // as long as the test keeps it open.
        let (sender, body) = http_body_util::channel::Channel::<Bytes, BodyError>::new(1);
        let request = http::Request::post("http://localhost/echo")
            .body(body)
            .unwrap();
        let response = echo
            .handle(request, "staying")
            .await
            .unwrap_or_else(|e| panic!("staying request {stay} got no instance: {e}"));
        assert_eq!(response.status(), 200);
        staying.push((sender, response));
        // Then requests that come and go, one per other stripe.
        for _ in 1..STRIPES_AT_MOST {
            let response = hello.handle(empty_get(), "passing").await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    }
    for (mut sender, response) in staying {
        sender.send_data(Bytes::from_static(b"bye")).await.unwrap();
        drop(sender);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"bye");
    }
}

fn empty_get() -> http::Request<http_body_util::combinators::BoxBody<Bytes, BodyError>> {
    http::Request::get("http://localhost/")
        .body(
            Empty::<Bytes>::new()
                .map_err(|never: Infallible| -> BodyError { match never {} })
                .boxed(),
        )
        .unwrap()
}

/// `--mpk auto` (the default) leaves MPK off for a pool that fits in the address space without
/// it (MPK costs every host call a key switch), and takes it for one that does not, where the
/// machine has it; without `pku` such a pool falls back to on-demand allocation.
#[test]
fn auto_takes_protection_keys_only_for_a_pool_that_needs_them() {
    let (_, facts) = build_engine(&EngineSettings::default()).unwrap();
    assert!(facts.pooling, "the default pool fits: {facts:?}");
    assert!(!facts.mpk, "a pool that fits needs no MPK: {facts:?}");

    // Two 4 GiB memories per slot: 40,000 slots want 320 TiB, beyond the 128 TiB of user
    // address space; striped over 15 keys they need about a fifteenth of that.
    let (_, facts) = build_engine(&EngineSettings {
        max_instances: 40_000,
        ..EngineSettings::default()
    })
    .unwrap();
    assert_eq!(facts.mpk, mpk_available(), "{facts:?}");
    assert_eq!(facts.pooling, mpk_available(), "{facts:?}");
}

/// Settings that ask for MPK where the machine offers it, and for none where it does not.
fn mpk_where_available() -> EngineSettings {
    EngineSettings {
        allocator: AllocatorChoice::Pooling,
        mpk: if mpk_available() {
            MpkChoice::Enable
        } else {
            MpkChoice::Disable
        },
        ..EngineSettings::default()
    }
}
