//! The embedded backend against a real database file.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshwa_kv::{KeyValueBackend, KvError, LIST_PAGE, RedbBackend, StoreId, StoreQuota};
use meshwa_manifest::Name;

fn store(tenant: &str, app: &str, name: &str) -> StoreId {
    StoreId {
        tenant: Name::new(tenant).unwrap(),
        app: Name::new(app).unwrap(),
        store: Name::new(name).unwrap(),
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
        .get_many(&s, &["k00001".to_owned(), "nope".to_owned()])
        .unwrap();
    assert_eq!(many, vec![Some(vec![]), None]);
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
