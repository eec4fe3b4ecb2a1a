//! The compile cache on a real data directory: hits, misses and damaged entries.

use std::path::Path;

use meshwa_manifest::{FunctionSpec, Limits, Manifest};
use meshwa_runtime::{CacheOutcome, EngineSettings, Runtime};
use meshwa_test_programs as programs;

fn spec(component: &str) -> (meshwa_manifest::FunctionId, FunctionSpec) {
    let text = format!(
        "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\n"
    );
    let manifest = Manifest::parse(&text, Path::new("m.toml"), Path::new("/")).unwrap();
    let spec = manifest.functions[0].clone();
    (manifest.function_id(&spec), spec)
}

fn settings() -> EngineSettings {
    EngineSettings {
        max_instances: 4,
        ..EngineSettings::default()
    }
}

#[test]
fn second_load_hits_and_a_changed_component_compiles() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let (id, hello) = spec(programs::HELLO);
    let first = runtime.load_http_function(id.clone(), &hello).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    drop(runtime);

    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let again = runtime.load_http_function(id.clone(), &hello).unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Hit);
    let (_, echo) = spec(programs::ECHO);
    let other = runtime.load_http_function(id, &echo).unwrap();
    assert_eq!(other.cache_outcome(), CacheOutcome::Compiled);
}

#[test]
fn a_damaged_entry_is_discarded_and_recompiled() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let (id, hello) = spec(programs::HELLO);
    runtime.load_http_function(id.clone(), &hello).unwrap();
    let entries: Vec<_> = std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"not machine code").unwrap();

    let reloaded = runtime.load_http_function(id, &hello).unwrap();
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Compiled);
    assert!(
        std::fs::read(&entries[0]).unwrap().len() > 1000,
        "entry rewritten"
    );
}

#[test]
fn a_function_above_the_memory_ceiling_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let (id, mut hello) = spec(programs::HELLO);
    hello.limits = Limits {
        max_memory: 1 << 40,
        ..Limits::default()
    };
    let error = runtime
        .load_http_function(id, &hello)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("exceeds this server's per-instance ceiling"),
        "{error}"
    );
}
