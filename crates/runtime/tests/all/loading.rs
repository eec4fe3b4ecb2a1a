//! Loading functions on a real data directory: the compile cache (hits, misses, damaged entries),
//! the allocator probe and its fallback, and limits checked at load.

use std::path::Path;

use std::sync::Arc;

use meshwa_manifest::Manifest;
use meshwa_runtime::{CacheOutcome, EngineSettings, Function, LoadError, Runtime, Secrets};
use meshwa_test_programs as programs;

/// An app of one function `f` running `component`, with extra manifest lines for it.
fn app(component: &str, extra: &str) -> Manifest {
    let text = format!(
        "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\n{extra}"
    );
    Manifest::parse(&text, Path::new("m.toml"), Path::new("/")).unwrap()
}

fn load(runtime: &Runtime, manifest: &Manifest) -> Result<Arc<Function>, String> {
    let mut functions = runtime
        .load_app(manifest, &Secrets::default())
        .map_err(|e: LoadError| e.to_string())?;
    Ok(functions.remove(0))
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
    let hello = app(programs::HELLO, "");
    let first = load(&runtime, &hello).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    drop(runtime);

    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let again = load(&runtime, &hello).unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Hit);
    let other = load(&runtime, &app(programs::ECHO, "")).unwrap();
    assert_eq!(other.cache_outcome(), CacheOutcome::Compiled);
}

/// Compiled code is shared within a tenant, never across tenants: a cache hit (a fast deploy, a
/// `compiled: false` answer) must not tell a tenant that another one deployed the same bytes
/// (issue 16, item 9).
#[test]
fn tenants_never_share_compiled_code() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let of = |tenant: &str, app: &str| {
        let text = format!(
            "tenant = \"{tenant}\"\napp = \"{app}\"\n[[functions]]\nname = \"f\"\ncomponent = \"{}\"\n",
            programs::HELLO
        );
        Manifest::parse(&text, Path::new("m.toml"), Path::new("/")).unwrap()
    };
    let outcome = |manifest: &Manifest| load(&runtime, manifest).unwrap().cache_outcome();
    assert_eq!(outcome(&of("acme", "one")), CacheOutcome::Compiled);
    assert_eq!(outcome(&of("acme", "two")), CacheOutcome::Hit);
    assert_eq!(outcome(&of("globex", "one")), CacheOutcome::Compiled);
}

/// The compile cache stays under its size: the least recently used entries go first, at start
/// and after each write (issue 16, item 7).
#[test]
fn the_compile_cache_evicts_the_least_recently_used_entries() {
    let data = tempfile::tempdir().unwrap();
    let cache = data.path().join("cache");
    let entries = || -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    load(&runtime, &app(programs::HELLO, "")).unwrap();
    let hello = entries();
    load(&runtime, &app(programs::ECHO, "")).unwrap();
    let both = entries();
    assert_eq!(both.len(), 2, "{both:?}");
    drop(runtime);

    // Room for the larger entry, not both: at start, the older one (hello's) goes.
    let max = both.iter().map(|(_, len)| *len).max().unwrap();
    let small = EngineSettings {
        compile_cache_max_size: max,
        ..settings()
    };
    let runtime = Runtime::new(small, data.path()).unwrap();
    let left = entries();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(
        left[0].0, hello[0].0,
        "the least recently used entry stayed"
    );
    // Loading hello again compiles it and evicts echo's, now the older.
    let again = load(&runtime, &app(programs::HELLO, "")).unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(entries(), hello);
}

#[test]
fn a_damaged_entry_is_discarded_and_recompiled() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let hello = app(programs::HELLO, "");
    load(&runtime, &hello).unwrap();
    let entries: Vec<_> = std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"not machine code").unwrap();

    let reloaded = load(&runtime, &hello).unwrap();
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
    let hello = app(programs::HELLO, "limits = { max-memory = \"1TiB\" }\n");
    let error = load(&runtime, &hello).err().unwrap();
    assert!(
        error.contains("exceeds this server's per-instance ceiling"),
        "{error}"
    );
}

/// A pool that cannot be reserved (far more slots than the address space holds) falls back to
/// on-demand allocation under `auto`, and is an error when pooling is required.
#[test]
fn an_unreservable_pool_falls_back_to_on_demand() {
    let data = tempfile::tempdir().unwrap();
    let huge = EngineSettings {
        max_instances: 50_000_000,
        ..EngineSettings::default()
    };
    let runtime = Runtime::new(huge.clone(), data.path()).unwrap();
    assert!(!runtime.facts().pooling);
    load(&runtime, &app(programs::HELLO, "")).unwrap();

    let required = EngineSettings {
        allocator: meshwa_runtime::AllocatorChoice::Pooling,
        ..huge
    };
    assert!(Runtime::new(required, data.path()).is_err());
    assert!(
        Runtime::new(settings(), data.path())
            .unwrap()
            .facts()
            .pooling
    );
}
