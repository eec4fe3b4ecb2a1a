//! The server out of disk and out of file descriptors (issue 22, item 4): clear errors while it
//! lasts, nothing acknowledged lost, and back to normal once the resource is free again, without a
//! restart.

use super::*;

/// Answers on one kept-alive connection, opened before a resource runs out: a request on it needs
/// no new descriptor on the server's side. Bodies must come with a `content-length` (the answers
/// read here are small and complete, so the gateway and the admin API send one).
struct KeptAlive {
    reader: BufReader<TcpStream>,
}

impl KeptAlive {
    fn connect(addr: SocketAddr) -> KeptAlive {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        KeptAlive {
            reader: BufReader::new(stream),
        }
    }

    fn request(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let stream = self.reader.get_mut();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n{headers}\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: bad status line {status_line:?}"));
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.unwrap_or_else(|| panic!("{method} {path}: no content-length"));
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// `meshwa serve` with its data directory on a tmpfs of `data_size` and its compile cache on a
/// tmpfs of 64 KiB (too small for any compiled component), both mounted in a mount namespace of
/// its own: `unshare` makes one, as an unprivileged user too (through a user namespace), so the
/// test needs no root and leaves no mount behind. The test reaches the mounts through
/// `/proc/<pid>/root`, as long as the server runs.
fn serve_on_small_disks(
    dir: &Path,
    data_size: &str,
    manifests: &[PathBuf],
    flags: &[&str],
) -> Served {
    let (data, cache) = (dir.join("data"), dir.join("cache"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--map-root-user", "--", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=\"$1\" meshwa-data \"$2\" && \
             mount -t tmpfs -o size=64k meshwa-cache \"$3\" || \
             { echo 'cannot mount a tmpfs in a new mount namespace (needs root or unprivileged user namespaces)' >&2; exit 1; }; \
             shift 3; exec \"$@\"",
        )
        .arg("sh")
        .arg(data_size)
        .arg(&data)
        .arg(&cache)
        .arg(BIN)
        .env("MESHWA_CACHE_DIR", &cache);
    spawn_serve(command, &data, manifests, flags)
}

/// The path of `path` as the server, in its own mount namespace, sees it.
fn in_server(served: &Served, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{}/root", served.child.id())).join(path.strip_prefix("/").unwrap())
}

/// Writes zeros into `ballast` until the file system says it is full; returns the bytes written.
fn fill(ballast: &Path) -> u64 {
    let mut file = std::fs::File::create(ballast).unwrap();
    let mut written = 0u64;
    // Big steps, then small ones for what is left; bounded by the tmpfs's size.
    for step in [1 << 20, 4096, 512] {
        let chunk = vec![0u8; step];
        for _ in 0..4096 {
            match file.write(&chunk) {
                Ok(n) if n == step => written += n as u64,
                Ok(n) => {
                    written += n as u64;
                    break;
                }
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                    break;
                }
            }
        }
    }
    written
}

/// A deploy's upload: the hello component as app `acme/{app}`.
fn hello_upload(app: &str) -> Vec<u8> {
    let manifest = format!(
        "tenant = \"acme\"\napp = \"{app}\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/acme/{app}\"\n"
    );
    let files = std::collections::BTreeMap::from([
        ("meshwa.toml".to_owned(), manifest.into_bytes()),
        ("f.wasm".to_owned(), std::fs::read(programs::HELLO).unwrap()),
    ]);
    meshwa_control::archive::pack(&files).unwrap()
}

/// A full disk: key-value writes and deploys fail with errors that say so, and nothing is
/// half-done; reads and everything acknowledged before stay; the compile cache, never able to
/// write, costs nothing but the cache; once space is freed, writes and deploys work again without
/// a restart.
#[test]
fn a_full_disk_refuses_writes_and_deploys_clearly_and_recovers_when_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, secrets) = services_app(dir.path());
    let flags = [
        "--secrets-file",
        secrets.to_str().unwrap(),
        "--operator-token",
        "op-token",
        "--kv-cache",
        "0",
    ];
    let served = serve_on_small_disks(dir.path(), "16m", &[manifest], &flags);
    let log = served.log_with("startup complete");
    assert!(log.contains("startup complete"), "{log}");
    // The cache's tmpfs cannot hold the compiled component: said once, and served anyway.
    assert!(log.contains("cannot write compile-cache entry"), "{log}");

    let auth = acme_with_a_token(served.admin);
    let (status, body) = http_with(
        served.admin,
        "PUT",
        "/v1/tenants/acme/apps/before",
        &auth,
        &hello_upload("before"),
    );
    assert_eq!(status, 200, "{body}");

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for i in 0..20 {
        let (key, value) = (format!("small-{i}"), format!("value-{i}"));
        let (status, body) = http(
            served.addr,
            "PUT",
            &format!("/t/svc/kv/entries/{key}"),
            value.as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        acknowledged.push((key, value));
    }

    let ballast = in_server(&served, &dir.path().join("data/ballast"));
    let filled = fill(&ballast);
    assert!(filled > 1 << 20, "only {filled} bytes of ballast");

    // Writes of 256 KiB values: the first that needs a new page of the database file fails (a
    // few may still fit into pages the file already has).
    let big = "x".repeat(256 * 1024);
    let mut refusal = None;
    for i in 0..64 {
        let key = format!("big-{i}");
        let (status, body) = http(
            served.addr,
            "PUT",
            &format!("/t/svc/kv/entries/{key}"),
            big.as_bytes(),
        );
        if status == 200 {
            acknowledged.push((key, big.clone()));
        } else {
            refusal = Some((status, body));
            break;
        }
    }
    let (status, body) = refusal.expect("every write succeeded on a full disk");
    // The services guest answers 422 with the store's error; the store's error says why.
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no space"), "{body}");
    let log = served.log_with("no space");
    assert!(log.contains("no space"), "{log}");

    // Reads still answer, the store's data is intact.
    for (key, value) in &acknowledged {
        let (status, body) = http(served.addr, "GET", &format!("/t/svc/kv/entries/{key}"), b"");
        assert_eq!(status, 200, "{key} on a full disk: {body}");
        assert!(body == *value, "{key} on a full disk: wrong value");
    }

    // A deploy: 507, saying the disk is full, and nothing half-written is left.
    let (status, body) = http_with(
        served.admin,
        "PUT",
        "/v1/tenants/acme/apps/during",
        &auth,
        &hello_upload("during"),
    );
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("insufficient_storage"), "{body}");
    let apps = in_server(&served, &dir.path().join("data/apps"));
    let leftovers: Vec<_> = std::fs::read_dir(&apps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(http(served.addr, "GET", "/acme/during", b"").0, 404);
    assert_eq!(http(served.addr, "GET", "/acme/before", b"").0, 200);

    // Space again: writes and deploys work, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let (status, body) = http(served.addr, "PUT", "/t/svc/kv/entries/after", b"after");
    assert_eq!(
        status,
        200,
        "a write once space is free again: {body}\n{}",
        served.log()
    );
    acknowledged.push(("after".into(), "after".into()));
    let (status, body) = http_with(
        served.admin,
        "PUT",
        "/v1/tenants/acme/apps/during",
        &auth,
        &hello_upload("during"),
    );
    assert_eq!(status, 200, "a deploy once space is free again: {body}");
    assert_eq!(http(served.addr, "GET", "/acme/during", b"").0, 200);
    for (key, value) in &acknowledged {
        let (status, body) = http(served.addr, "GET", &format!("/t/svc/kv/entries/{key}"), b"");
        assert_eq!(status, 200, "{key} after the disk was freed: {body}");
        assert!(
            body == *value,
            "{key} after the disk was freed: wrong value"
        );
    }
}

/// Out of file descriptors: the server keeps running, answers on connections it already has
/// (key-value writes included), says what is wrong where a new file is needed, and accepts new
/// connections again once descriptors are free.
#[test]
fn running_out_of_file_descriptors_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (manifest, secrets) = services_app(dir.path());
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$@\"", "sh", BIN])
        .env("MESHWA_CACHE_DIR", programs::COMPILE_CACHE_DIR);
    let served = spawn_serve(
        command,
        &data,
        &[manifest],
        &[
            "--secrets-file",
            secrets.to_str().unwrap(),
            "--operator-token",
            "op-token",
        ],
    );
    let auth = acme_with_a_token(served.admin);
    let mut gateway = KeptAlive::connect(served.addr);
    let mut admin = KeptAlive::connect(served.admin);
    assert_eq!(
        gateway
            .request("PUT", "/t/svc/kv/entries/before", "", b"before")
            .0,
        200
    );

    // Idle connections until the server can accept no more (each one it accepts holds a
    // descriptor until the client's first byte or the header timeout).
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(served.addr).unwrap());
    }
    let log = served.log_with("accept failed");
    assert!(log.contains("accept failed"), "{log}");

    // Connections the server holds still work: a durable write, a read.
    let (status, body) = gateway.request("PUT", "/t/svc/kv/entries/during", "", b"during");
    assert_eq!(status, 200, "{body}");
    let (status, body) = gateway.request("GET", "/t/svc/kv/entries/before", "", b"");
    assert_eq!((status, body.as_str()), (200, "before"));
    // A deploy needs new files: 503, saying why, and nothing changes.
    let (status, body) = admin.request(
        "PUT",
        "/v1/tenants/acme/apps/during",
        &auth,
        &hello_upload("during"),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");

    drop(idle);
    // Once freed, new connections are accepted again (the idle ones closed, the server's
    // descriptors come back as it notices), and a deploy succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = http_with(
            served.admin,
            "PUT",
            "/v1/tenants/acme/apps/during",
            &auth,
            &hello_upload("during"),
        );
        if status == 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(served.addr, "GET", "/acme/during", b"").0, 200);
    let (status, body) = http(served.addr, "GET", "/t/svc/kv/entries/during", b"");
    assert_eq!((status, body.as_str()), (200, "during"));
}
