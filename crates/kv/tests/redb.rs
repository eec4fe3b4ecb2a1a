//! The embedded backend against a real database file.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshwa_kv::{
    KeyValueBackend, KvError, LIST_PAGE, ReadBudget, RedbBackend, StoreId, StoreQuota,
};
use meshwa_manifest::{Name, StoreName};

fn store(tenant: &str, app: &str, name: &str) -> StoreId {
    StoreId {
        tenant: Name::new(tenant).unwrap(),
        app: Name::new(app).unwrap(),
        store: StoreName::new(name).unwrap(),
    }
}

const QUOTA: StoreQuota = StoreQuota {
    max_key_size: 16,
    max_value_size: 100,
    max_total_size: 1000,
};

fn set(kv: &RedbBackend, s: &StoreId, key: &str, value: &[u8]) -> Result<(), KvError> {
    kv.set_many(s, &[(key.to_owned(), value.to_vec())], &QUOTA)
}

#[test]
fn values_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let s = store("acme", "book", "entries");
    {
        let kv = RedbBackend::open(&path).unwrap();
        set(&kv, &s, "a", b"one").unwrap();
        assert_eq!(kv.increment(&s, "n", 5, &QUOTA).unwrap(), 5);
    }
    let kv = RedbBackend::open(&path).unwrap();
    assert_eq!(kv.get(&s, "a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(kv.increment(&s, "n", 2, &QUOTA).unwrap(), 7);
    assert!(kv.exists(&s, "a").unwrap());
    kv.delete_many(&s, &["a".to_owned(), "missing".to_owned()])
        .unwrap();
    assert!(!kv.exists(&s, "a").unwrap());
}

#[test]
fn same_store_name_in_two_tenants_is_two_stores() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let a = store("acme", "book", "entries");
    let b = store("globex", "book", "entries");
    let c = store("acme", "other", "entries");
    set(&kv, &a, "k", b"acme").unwrap();
    assert_eq!(kv.get(&b, "k").unwrap(), None);
    assert_eq!(kv.get(&c, "k").unwrap(), None);
    assert!(kv.list_keys(&b, 0).unwrap().keys.is_empty());
    set(&kv, &b, "k", b"globex").unwrap();
    assert_eq!(kv.get(&a, "k").unwrap().as_deref(), Some(&b"acme"[..]));
}

#[test]
fn quotas_refuse_writes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let s = store("acme", "book", "entries");
    let e = set(&kv, &s, &"k".repeat(17), b"v").unwrap_err();
    assert!(e.to_string().contains("max-key-size of 16 bytes"), "{e}");
    assert!(e.is_callers_fault());
    let e = set(&kv, &s, "k", &[0; 101]).unwrap_err();
    assert!(e.to_string().contains("max-value-size of 100 bytes"), "{e}");
    let e = set(&kv, &s, "", b"v").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");

    // 9 entries of 1 + 100 bytes fit in 1000; the 10th does not.
    for i in 0..9 {
        set(&kv, &s, &i.to_string(), &[7; 100]).unwrap();
    }
    assert_eq!(kv.usage(&s).unwrap(), 909);
    let e = set(&kv, &s, "9", &[7; 100]).unwrap_err();
    assert!(
        e.to_string().contains("max-total-size of 1000 bytes"),
        "{e}"
    );
    assert!(!kv.exists(&s, "9").unwrap());
    assert_eq!(kv.usage(&s).unwrap(), 909);
    // Overwriting counts the difference, deleting frees.
    set(&kv, &s, "0", &[1; 50]).unwrap();
    assert_eq!(kv.usage(&s).unwrap(), 859);
    kv.delete_many(&s, &["1".to_owned()]).unwrap();
    assert_eq!(kv.usage(&s).unwrap(), 758);

    // A batch is all or nothing.
    let batch: Vec<(String, Vec<u8>)> = (10..13).map(|i| (i.to_string(), vec![0; 100])).collect();
    assert!(kv.set_many(&s, &batch, &QUOTA).is_err());
    assert!(!kv.exists(&s, "10").unwrap());
}

#[test]
fn increment_refuses_non_numbers_and_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let s = store("acme", "book", "entries");
    set(&kv, &s, "text", b"hello").unwrap();
    let e = kv.increment(&s, "text", 1, &QUOTA).unwrap_err();
    assert!(e.to_string().contains("not a decimal number"), "{e}");
    assert_eq!(kv.increment(&s, "n", u64::MAX, &QUOTA).unwrap(), u64::MAX);
    let e = kv.increment(&s, "n", 1, &QUOTA).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    assert_eq!(
        kv.get(&s, "n").unwrap(),
        Some(u64::MAX.to_string().into_bytes())
    );
}

#[test]
fn list_keys_pages_through_everything() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let s = store("acme", "book", "entries");
    let quota = StoreQuota {
        max_total_size: u64::MAX,
        ..QUOTA
    };
    let entries: Vec<(String, Vec<u8>)> = (0..LIST_PAGE + 5)
        .map(|i| (format!("k{i:05}"), vec![]))
        .collect();
    kv.set_many(&s, &entries, &quota).unwrap();
    let first = kv.list_keys(&s, 0).unwrap();
    assert_eq!(first.keys.len(), LIST_PAGE);
    assert_eq!(first.keys[0], "k00000");
    let second = kv.list_keys(&s, first.cursor.unwrap()).unwrap();
    assert_eq!(second.keys.len(), 5);
    assert_eq!(second.cursor, None);
    assert_eq!(second.keys[4], format!("k{:05}", LIST_PAGE + 4));
    let many = kv
        .get_many(
            &s,
            &["k00001".to_owned(), "nope".to_owned()],
            &mut unbounded(),
        )
        .unwrap();
    assert_eq!(many, vec![Some(vec![]), None]);
}

fn unbounded() -> ReadBudget {
    ReadBudget::new(u64::MAX)
}

/// A batch read stops at its byte budget, however its keys repeat, from the file and from the
/// cache alike; within the budget it answers in full.
#[test]
fn a_batch_read_stops_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = store("t", "a", "s");
    let cached = meshwa_kv::CachedBackend::new(
        RedbBackend::open(&dir.path().join("kv.redb")).unwrap(),
        1024 * 1024,
    );
    let quota = StoreQuota {
        max_value_size: 1000,
        max_total_size: 2000,
        ..QUOTA
    };
    cached
        .set_many(&s, &[("big".into(), vec![7; 1000])], &quota)
        .unwrap();
    let keys = vec!["big".to_owned(); 1000];
    // The first round reads the file (the read that fits fills the cache), the second the cache.
    for round in ["file", "cache"] {
        let mut budget = ReadBudget::new(10_000);
        let refused = cached.get_many(&s, &keys, &mut budget).unwrap_err();
        assert!(
            matches!(refused, KvError::ReadTooLarge { limit: 10_000, .. }),
            "{round}: {refused}"
        );
        assert!(refused.is_callers_fault());
        assert!(budget.used() <= 10_000, "{round}: {}", budget.used());

        let mut budget = ReadBudget::new(10_000);
        let values = cached.get_many(&s, &keys[..10], &mut budget).unwrap();
        assert_eq!(values, vec![Some(vec![7; 1000]); 10], "{round}");
        assert_eq!(budget.used(), 10_000);
    }
    // Missing keys cost nothing.
    let mut budget = ReadBudget::new(0);
    let none = cached
        .get_many(&s, &vec!["none".to_owned(); 1000], &mut budget)
        .unwrap();
    assert_eq!(none, vec![None; 1000]);
}

#[test]
fn a_second_process_cannot_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let _first = RedbBackend::open(&path).unwrap();
    let e = RedbBackend::open(&path)
        .err()
        .expect("second open must fail");
    assert!(e.to_string().contains("cannot open"), "{e}");
}

/// The read cache in front of the embedded backend: writes drop what it held, and a read racing
/// with writes never returns a value older than the last acknowledged one.
#[test]
fn the_read_cache_never_serves_a_value_older_than_an_acknowledged_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(meshwa_kv::CachedBackend::new(
        RedbBackend::open(&dir.path().join("kv.redb")).unwrap(),
        1024 * 1024,
    ));
    let store = store("t", "a", "s");
    let quota = QUOTA;

    // Sequentially: every kind of write is seen by the next read.
    assert_eq!(backend.get(&store, "k").unwrap(), None);
    backend
        .set_many(&store, &[("k".into(), b"1".to_vec())], &quota)
        .unwrap();
    assert_eq!(backend.get(&store, "k").unwrap(), Some(b"1".to_vec()));
    assert_eq!(backend.increment(&store, "k", 4, &quota).unwrap(), 5);
    assert_eq!(backend.get(&store, "k").unwrap(), Some(b"5".to_vec()));
    assert_eq!(
        backend
            .get_many(&store, &["k".into(), "none".into()], &mut unbounded())
            .unwrap(),
        vec![Some(b"5".to_vec()), None]
    );
    backend.delete_many(&store, &["k".into()]).unwrap();
    assert!(!backend.exists(&store, "k").unwrap());
    assert_eq!(backend.get(&store, "k").unwrap(), None);
    assert!(backend.cached_bytes() > 0, "reads fill the cache");

    // Concurrently: one writer counts up; readers check each value against what was
    // acknowledged before their read began.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (backend, store, acknowledged) = (backend.clone(), store.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            for n in 1..=300u64 {
                backend
                    .set_many(&store, &[("n".into(), n.to_string().into_bytes())], &quota)
                    .unwrap();
                acknowledged.store(n, Ordering::SeqCst);
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (backend, store, acknowledged) =
                (backend.clone(), store.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                for _ in 0..3000 {
                    let floor = acknowledged.load(Ordering::SeqCst);
                    let read = if reader == 0 {
                        backend
                            .get_many(&store, &["n".into()], &mut unbounded())
                            .unwrap()
                            .remove(0)
                    } else {
                        backend.get(&store, "n").unwrap()
                    };
                    let seen: u64 = read
                        .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
                        .unwrap_or(0);
                    assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(backend.get(&store, "n").unwrap(), Some(b"300".to_vec()));
}

#[test]
fn dropping_a_tenant_deletes_all_its_stores_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let kv = meshwa_kv::CachedBackend::new(
        RedbBackend::open(&dir.path().join("kv.redb")).unwrap(),
        1024 * 1024,
    );
    let (a, a2, b) = (
        store("acme", "book", "entries"),
        store("acme", "shop", "orders"),
        store("acme-two", "book", "entries"),
    );
    for s in [&a, &a2, &b] {
        kv.set_many(s, &[("k".to_owned(), b"v".to_vec())], &QUOTA)
            .unwrap();
        // Cached now: the drop must not leave the cache serving it.
        assert_eq!(kv.get(s, "k").unwrap().as_deref(), Some(&b"v"[..]));
    }
    // The operator's own app of the tenant keeps its data.
    assert_eq!(kv.drop_tenant("acme", &["shop"]).unwrap(), 1);
    assert_eq!(kv.get(&a, "k").unwrap(), None);
    assert_eq!(kv.usage(&a).unwrap(), 0);
    assert_eq!(kv.get(&a2, "k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(kv.drop_tenant("acme", &[]).unwrap(), 1);
    assert_eq!(kv.get(&a2, "k").unwrap(), None);
    assert_eq!(kv.get(&b, "k").unwrap().as_deref(), Some(&b"v"[..]));
    assert!(kv.usage(&b).unwrap() > 0);
    assert_eq!(kv.drop_tenant("acme", &[]).unwrap(), 0);
}

#[test]
fn set_if_empty_writes_only_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    let default = store("t", "a", "");
    let entries = vec![("k".to_owned(), b"v1".to_vec())];
    assert!(kv.set_if_empty(&default, &entries, &QUOTA).unwrap());
    assert_eq!(kv.get(&default, "k").unwrap().as_deref(), Some(&b"v1"[..]));
    set(&kv, &default, "k", b"changed").unwrap();
    let again = vec![("k".to_owned(), b"v2".to_vec())];
    assert!(!kv.set_if_empty(&default, &again, &QUOTA).unwrap());
    assert_eq!(
        kv.get(&default, "k").unwrap().as_deref(),
        Some(&b"changed"[..])
    );
    // The default store is its own store, apart from every named one.
    assert_eq!(kv.get(&store("t", "a", "x"), "k").unwrap(), None);
    // Over the quota: nothing written.
    let big = vec![("k".to_owned(), vec![0; 101])];
    let empty = store("t", "a", "other");
    assert!(matches!(
        kv.set_if_empty(&empty, &big, &QUOTA),
        Err(KvError::Quota { .. })
    ));
    assert_eq!(kv.usage(&empty).unwrap(), 0);
}

#[test]
fn preload_files_are_checked_before_anything_is_written() {
    use meshwa_kv::preload::{PreloadError, read};
    let dir = tempfile::tempdir().unwrap();
    let s = store("t", "a", "");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = file("good.json", r#"{"b": "2", "a": "1"}"#);
    assert_eq!(
        read(&s, &good, &QUOTA).unwrap(),
        [
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec())
        ]
    );
    let missing = read(&s, &dir.path().join("nope.json"), &QUOTA).unwrap_err();
    assert!(matches!(missing, PreloadError::Missing { .. }), "{missing}");
    for (text, kind) in [
        ("not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        (r#"{"a": 1}"#, "not a JSON object"),
        (r#"{"a": "x"} trailing"#, "not a JSON object"),
        (
            &format!(r#"{{"a": "{}"}}"#, "x".repeat(101)),
            "max-value-size",
        ),
        (&format!(r#"{{"{}": "x"}}"#, "k".repeat(17)), "max-key-size"),
        (r#"{"": "x"}"#, "keys must not be empty"),
    ] {
        let e = read(&s, &file("bad.json", text), &QUOTA).unwrap_err();
        assert!(e.is_suppliers_fault());
        assert!(e.to_string().contains(kind), "{text}: {e}");
        assert!(e.to_string().contains("bad.json"), "{e}");
    }
    let many: Vec<String> = (0..20)
        .map(|i| format!(r#""key{i:02}": "{}""#, "v".repeat(60)))
        .collect();
    let e = read(
        &s,
        &file("many.json", &format!("{{{}}}", many.join(","))),
        &QUOTA,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("max-total-size of 1000 bytes"),
        "{e}"
    );
    let huge = file("huge.json", &" ".repeat(80 * 1024));
    let e = read(&s, &huge, &QUOTA).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}
