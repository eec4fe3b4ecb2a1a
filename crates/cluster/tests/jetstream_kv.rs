//! The JetStream key-value backend against real `nats-server` processes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use meshwa_cluster::kv::JetStreamBackend;
use meshwa_cluster::testing::NatsCluster;
use meshwa_cluster::{Cluster, ClusterSettings};
use meshwa_kv::{KeyValueBackend, KvError, LIST_PAGE, StoreId, StoreQuota};
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

/// A runtime that drives the connections, and a backend per server URL given.
fn backends(urls: &[String], replicas: usize) -> (tokio::runtime::Runtime, Vec<JetStreamBackend>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backends = urls
        .iter()
        .map(|url| {
            runtime.block_on(async {
                let cluster = Cluster::connect(&ClusterSettings {
                    servers: vec![url.clone()],
                    replicas,
                })
                .await
                .unwrap();
                cluster.key_value()
            })
        })
        .collect();
    (runtime, backends)
}

fn set(kv: &dyn KeyValueBackend, s: &StoreId, key: &str, value: &[u8]) -> Result<(), KvError> {
    kv.set_many(s, &[(key.to_owned(), value.to_vec())], &QUOTA)
}

#[test]
fn the_backend_keeps_the_embedded_backends_semantics() {
    let nats = NatsCluster::start(1);
    let (_runtime, backends) = backends(&nats.urls(), 1);
    let kv = &backends[0];

    // Values, existence, deletion; stores of other apps and tenants are disjoint.
    let s = store("acme", "book", "entries");
    let other_tenant = store("globex", "book", "entries");
    let default_store = store("acme", "book", "");
    set(kv, &s, "a", b"one").unwrap();
    set(kv, &default_store, "a", b"default").unwrap();
    assert_eq!(kv.get(&s, "a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(
        kv.get(&default_store, "a").unwrap().as_deref(),
        Some(&b"default"[..])
    );
    assert_eq!(kv.get(&other_tenant, "a").unwrap(), None);
    assert_eq!(kv.get(&s, "").unwrap(), None);
    assert!(kv.exists(&s, "a").unwrap());
    kv.delete_many(&s, &["a".to_owned(), "missing".to_owned()])
        .unwrap();
    assert!(!kv.exists(&s, "a").unwrap());
    // Keys that are not JetStream tokens are kept as the function wrote them.
    set(kv, &s, "a b/c.d*>é", b"x").unwrap();
    assert_eq!(kv.list_keys(&s, 0).unwrap().keys, vec!["a b/c.d*>é"]);

    // Increments, and refusals that change nothing.
    assert_eq!(kv.increment(&s, "n", 5, &QUOTA).unwrap(), 5);
    assert_eq!(kv.increment(&s, "n", 2, &QUOTA).unwrap(), 7);
    set(kv, &s, "text", b"seven").unwrap();
    assert!(matches!(
        kv.increment(&s, "text", 1, &QUOTA),
        Err(KvError::Invalid { .. })
    ));
    set(kv, &s, "max", u64::MAX.to_string().as_bytes()).unwrap();
    assert!(matches!(
        kv.increment(&s, "max", 1, &QUOTA),
        Err(KvError::Invalid { .. })
    ));

    // Quotas: key, value and total size; a refused write changes nothing, usage is exact.
    let q = store("acme", "book", "quota");
    assert!(matches!(
        set(kv, &q, "a-key-longer-than-16", b"v"),
        Err(KvError::Quota { .. })
    ));
    assert!(matches!(
        set(kv, &q, "k", &[0; 101]),
        Err(KvError::Quota { .. })
    ));
    for i in 0..9 {
        set(kv, &q, &format!("k{i}"), &[1; 98]).unwrap();
    }
    assert_eq!(kv.usage(&q).unwrap(), 900);
    let refused = set(kv, &q, "k9", &[1; 99]).unwrap_err();
    assert!(refused.to_string().contains("max-total-size"), "{refused}");
    assert_eq!(kv.get(&q, "k9").unwrap(), None);
    assert_eq!(kv.usage(&q).unwrap(), 900);
    // Overwriting with a smaller value and deleting give the bytes back.
    set(kv, &q, "k0", b"").unwrap();
    assert_eq!(kv.usage(&q).unwrap(), 802);
    kv.delete_many(&q, &["k1".to_owned()]).unwrap();
    assert_eq!(kv.usage(&q).unwrap(), 702);
    set(kv, &q, "k9", &[1; 98]).unwrap();
    assert_eq!(kv.usage(&q).unwrap(), 802);

    // Listing pages through every key in order, deleted keys left out.
    let many = store("acme", "book", "many");
    let big = StoreQuota {
        max_total_size: 1 << 20,
        ..QUOTA
    };
    let entries: Vec<(String, Vec<u8>)> = (0..LIST_PAGE + 5)
        .map(|i| (format!("key{i:05}"), b"v".to_vec()))
        .collect();
    kv.set_many(&many, &entries, &big).unwrap();
    kv.delete_many(&many, &["key00003".to_owned()]).unwrap();
    let first = kv.list_keys(&many, 0).unwrap();
    assert_eq!(first.keys.len(), LIST_PAGE);
    assert_eq!(first.keys[3], "key00004");
    let second = kv.list_keys(&many, first.cursor.unwrap()).unwrap();
    assert_eq!(second.keys.len(), 4);
    assert_eq!(second.cursor, None);
    assert_eq!(
        second.keys.last().unwrap(),
        &format!("key{:05}", LIST_PAGE + 4)
    );

    // Preloading writes only into an empty store.
    let fresh = store("acme", "book", "fresh");
    let preload = vec![("p".to_owned(), b"1".to_vec())];
    assert!(kv.set_if_empty(&fresh, &preload, &QUOTA).unwrap());
    set(kv, &fresh, "p", b"changed").unwrap();
    assert!(!kv.set_if_empty(&fresh, &preload, &QUOTA).unwrap());
    assert_eq!(
        kv.get(&fresh, "p").unwrap().as_deref(),
        Some(&b"changed"[..])
    );

    // Dropping a tenant deletes its stores but those of the apps kept, and nothing else.
    let kept = store("acme", "kept", "entries");
    set(kv, &kept, "k", b"v").unwrap();
    set(kv, &other_tenant, "k", b"v").unwrap();
    let dropped = kv.drop_tenant("acme", &["kept"]).unwrap();
    assert_eq!(dropped, 5, "entries, the default store, quota, many, fresh");
    assert!(kv.list_keys(&s, 0).unwrap().keys.is_empty());
    assert_eq!(kv.usage(&q).unwrap(), 0);
    assert_eq!(kv.get(&kept, "k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        kv.get(&other_tenant, "k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn three_nodes_incrementing_one_counter_lose_no_increment() {
    let nats = NatsCluster::start(3);
    let (_runtime, backends) = backends(&nats.urls(), 3);
    let s = store("acme", "shop", "counters");

    // A write through one server is read through another.
    set(&backends[0], &s, "greeting", b"hello").unwrap();
    assert_eq!(
        backends[1].get(&s, "greeting").unwrap().as_deref(),
        Some(&b"hello"[..])
    );

    const PER_CLIENT: u64 = 25;
    let threads: Vec<_> = (0..12)
        .map(|client| {
            let kv = backends[client % 3].clone();
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..PER_CLIENT {
                    kv.increment(&s, "hits", 1, &QUOTA).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for kv in &backends {
        assert_eq!(
            kv.get(&s, "hits").unwrap().as_deref(),
            Some((12 * PER_CLIENT).to_string().as_bytes())
        );
    }
    assert_eq!(
        backends[2].usage(&s).unwrap(),
        ("greeting".len() + "hello".len() + "hits".len() + "300".len()) as u64
    );
}

#[test]
fn killing_a_nats_server_during_writes_loses_no_acknowledged_write() {
    let mut nats = NatsCluster::start(3);
    let urls = nats.urls();
    // The writer may be connected to any server, and fails over between them.
    let (runtime, backends) = {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let kv = runtime.block_on(async {
            Cluster::connect(&ClusterSettings {
                servers: urls.clone(),
                replicas: 3,
            })
            .await
            .unwrap()
            .key_value()
        });
        (runtime, vec![kv])
    };
    let kv = backends[0].clone();
    let s = store("acme", "shop", "orders");
    let big = StoreQuota {
        max_total_size: 1 << 20,
        ..QUOTA
    };
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (kv, s, stop, acknowledged) =
            (kv.clone(), s.clone(), stop.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut failures = 0;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                match kv.set_many(&s, &[(format!("o{i}"), i.to_string().into_bytes())], &big) {
                    Ok(()) => {
                        acknowledged.store(i + 1, Ordering::SeqCst);
                        i += 1;
                    }
                    // Unacknowledged writes during the election are allowed; retried.
                    Err(_) => failures += 1,
                }
            }
            failures
        })
    };
    let wait_for = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acknowledged.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "writes stalled");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for(50);
    // Kill the server that leads the bucket's stream: the one every write goes through.
    let leader = runtime
        .block_on(kv.leader(&s))
        .expect("the bucket has a leader");
    let killed: usize = leader.trim_start_matches('n').parse().unwrap();
    nats.kill(killed);
    let at_kill = acknowledged.load(Ordering::SeqCst);
    wait_for(at_kill + 50);
    stop.store(true, Ordering::Relaxed);
    let _failures = writer.join().unwrap();
    let written = acknowledged.load(Ordering::SeqCst);
    // Every acknowledged write is there, read through a surviving server.
    let survivor = urls[(killed + 1) % 3].clone();
    let (_runtime2, survivors) = backends_for(&[survivor]);
    for i in 0..written {
        assert_eq!(
            survivors[0].get(&s, &format!("o{i}")).unwrap(),
            Some(i.to_string().into_bytes()),
            "acknowledged write o{i} of {written} is lost"
        );
    }
    // And after the killed server comes back, it serves them too.
    nats.restart(killed);
    let (_runtime3, restarted) = backends_for(&urls[killed..=killed]);
    assert_eq!(
        restarted[0].get(&s, &format!("o{}", written - 1)).unwrap(),
        Some((written - 1).to_string().into_bytes())
    );
}

fn backends_for(urls: &[String]) -> (tokio::runtime::Runtime, Vec<JetStreamBackend>) {
    backends(urls, 3)
}
