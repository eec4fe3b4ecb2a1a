//! Exercises the host services through the Rust SDK: key-value, config, logging, stdout/stderr
//! and outbound HTTP.
//!
//! Paths below are what follows the function's route. Key-value errors answer 422 with
//! `error: <text>`, a missing key 404.
//!
//! | request                               | what it does                                          |
//! |---------------------------------------|-------------------------------------------------------|
//! | `GET /kv/<store>/<key>`               | the value                                             |
//! | `PUT /kv/<store>/<key>` + body        | sets the value                                        |
//! | `DELETE /kv/<store>/<key>`            | deletes it                                            |
//! | `GET /exists/<store>/<key>`           | `true` or `false`                                     |
//! | `GET /keys/<store>`                   | every key, one per line                               |
//! | `POST /incr/<store>/<key>?by=N`       | the new value                                         |
//! | `PUT /batch/<store>` + `k=v` lines    | sets them all                                         |
//! | `GET /batch/<store>?keys=a,b`         | `k=v` lines, `k!` for a missing key                    |
//! | `GET /batch-repeat/<store>?key=k&times=N` | one get-many of `k` N times: `<N> values, <bytes> bytes` |
//! | `PUT /batch-alias/<store>?kib=K&times=N` | one set-many of N entries whose values are all the same K KiB of memory |
//! | `GET /config/<key>`                   | the value (404 if not granted)                        |
//! | `GET /config`                         | every granted `k=v`, one per line                     |
//! | `POST /log` + body                    | the body to wasi:logging (info), stdout and stderr    |
//! | `POST /flood?n=N`                     | N lines to stdout                                     |
//! | `GET /fetch?url=<url>`                | GET of `url` over wasi:http: `<status> <body>`, 502 on error |
//! | `POST /kvbench/<store>?op=get\|set&n=N` | N timed gets or durable sets of a 100-byte value: `<p50 ns> <p99 ns>` |
//!
//! An event from a trigger (a request with `meshwa-trigger: <kind>`) increments `<kind>` in the
//! store `events` and appends its `meshwa-subject` (or `meshwa-tick`) and body, one line each, to
//! the value `<kind>-log` (not atomically: for events that do not overlap); it answers 200
//! `counted`.

use meshwa_sdk::kv::Store;
use meshwa_sdk::{Request, Response, config, http_request, log};

fn query<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn kv_error(error: meshwa_sdk::kv::Error) -> Response {
    Response::new(422, format!("error: {error}"))
}

/// A header's value, as text.
fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Counts an event from a trigger (see the module docs).
fn count_event(request: &Request, trigger: &str) -> Response {
    let events = match Store::open("events") {
        Ok(store) => store,
        Err(e) => return kv_error(e),
    };
    let log_key = format!("{trigger}-log");
    let line = format!(
        "{} {}\n",
        header(request, "meshwa-subject")
            .or(header(request, "meshwa-tick"))
            .unwrap_or("-"),
        String::from_utf8_lossy(&request.body)
    );
    let mut log = match events.get(&log_key) {
        Ok(value) => value.unwrap_or_default(),
        Err(e) => return kv_error(e),
    };
    log.extend_from_slice(line.as_bytes());
    match events
        .set(&log_key, &log)
        .and_then(|()| events.increment(trigger, 1))
    {
        Ok(_) => Response::new(200, "counted"),
        Err(e) => kv_error(e),
    }
}

/// What a hostile guest can do with the canonical ABI and no safe language in the way: hand
/// the host a list of `times` entries that all point at the same `len` bytes, so that the host
/// is asked to take `times * len` bytes while the guest holds `len`.
fn aliased_set_many(store: &str, len: usize, times: usize) -> Response {
    let store = match Store::open(store) {
        Ok(store) => store,
        Err(e) => return kv_error(e),
    };
    let mut value = std::mem::ManuallyDrop::new(vec![b'x'; len]);
    let (ptr, capacity) = (value.as_mut_ptr(), value.capacity());
    let entries: Vec<(String, Vec<u8>)> = (0..times)
        .map(|i| {
            // SAFETY: every `Vec` built here shares `value`'s allocation and none is ever
            // dropped (the list is forgotten below), so nothing is freed twice; the host only
            // reads them.
            let alias = unsafe { Vec::from_raw_parts(ptr, len, capacity) };
            (format!("k{i}"), alias)
        })
        .collect();
    let result = store.set_many(&entries);
    std::mem::forget(entries);
    match result {
        Ok(()) => Response::new(200, "ok"),
        Err(e) => kv_error(e),
    }
}

fn handle(request: Request) -> Response {
    if let Some(trigger) = header(&request, "meshwa-trigger") {
        return count_event(&request, &trigger.to_owned());
    }
    let (path, q) = request.path.split_once('?').unwrap_or((&request.path, ""));
    // The route comes first; the operation is the segment after the route's two segments.
    let parts: Vec<&str> = path.split('/').skip(3).collect();
    match (request.method.as_str(), parts.as_slice()) {
        ("GET", ["kv", store, key]) => match Store::open(store).and_then(|s| s.get(key)) {
            Ok(Some(value)) => Response::new(200, value),
            Ok(None) => Response::new(404, "missing"),
            Err(e) => kv_error(e),
        },
        ("PUT", ["kv", store, key]) => {
            match Store::open(store).and_then(|s| s.set(key, &request.body)) {
                Ok(()) => Response::new(200, "ok"),
                Err(e) => kv_error(e),
            }
        }
        ("DELETE", ["kv", store, key]) => match Store::open(store).and_then(|s| s.delete(key)) {
            Ok(()) => Response::new(200, "ok"),
            Err(e) => kv_error(e),
        },
        ("GET", ["exists", store, key]) => match Store::open(store).and_then(|s| s.exists(key)) {
            Ok(found) => Response::new(200, found.to_string()),
            Err(e) => kv_error(e),
        },
        ("GET", ["keys", store]) => match Store::open(store).and_then(|s| s.keys()) {
            Ok(keys) => Response::new(200, keys.join("\n")),
            Err(e) => kv_error(e),
        },
        ("POST", ["incr", store, key]) => {
            let by = query(q, "by").and_then(|v| v.parse().ok()).unwrap_or(1);
            match Store::open(store).and_then(|s| s.increment(key, by)) {
                Ok(value) => Response::new(200, value.to_string()),
                Err(e) => kv_error(e),
            }
        }
        ("PUT", ["batch", store]) => {
            let text = String::from_utf8_lossy(&request.body);
            let entries: Vec<(String, Vec<u8>)> = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            match Store::open(store).and_then(|s| s.set_many(&entries)) {
                Ok(()) => Response::new(200, "ok"),
                Err(e) => kv_error(e),
            }
        }
        ("GET", ["batch", store]) => {
            let keys: Vec<String> = query(q, "keys")
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            match Store::open(store).and_then(|s| s.get_many(&keys)) {
                Ok(values) => {
                    let lines: Vec<String> = keys
                        .iter()
                        .zip(values)
                        .map(|(key, value)| match value {
                            Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                            None => format!("{key}!"),
                        })
                        .collect();
                    Response::new(200, lines.join("\n"))
                }
                Err(e) => kv_error(e),
            }
        }
        // A few bytes of keys that ask the host for a large value many times over.
        ("GET", ["batch-repeat", store]) => {
            let key = query(q, "key").unwrap_or("");
            let times = query(q, "times").and_then(|v| v.parse().ok()).unwrap_or(1);
            let keys = vec![key.to_string(); times];
            match Store::open(store).and_then(|s| s.get_many(&keys)) {
                Ok(values) => {
                    let bytes: usize = values.iter().flatten().map(|(_, v)| v.len()).sum();
                    Response::new(200, format!("{} values, {bytes} bytes", values.len()))
                }
                Err(e) => kv_error(e),
            }
        }
        ("PUT", ["batch-alias", store]) => {
            let kib: usize = query(q, "kib").and_then(|v| v.parse().ok()).unwrap_or(1);
            let times: usize = query(q, "times").and_then(|v| v.parse().ok()).unwrap_or(1);
            aliased_set_many(store, kib * 1024, times)
        }
        ("GET", ["config", key]) => match config::get(key) {
            Some(value) => Response::new(200, value),
            None => Response::new(404, "not granted"),
        },
        ("GET", ["config"]) => {
            let mut all = config::all();
            all.sort();
            let lines: Vec<String> = all.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            Response::new(200, lines.join("\n"))
        }
        ("POST", ["log"]) => {
            let text = String::from_utf8_lossy(&request.body);
            log::info(&format!("via wasi:logging: {text}"));
            println!("via stdout: {text}");
            eprintln!("via stderr: {text}");
            Response::new(200, "logged")
        }
        ("POST", ["flood"]) => {
            let n: u32 = query(q, "n").and_then(|v| v.parse().ok()).unwrap_or(1000);
            for i in 0..n {
                println!("flood line {i}");
            }
            Response::new(200, format!("{n} lines"))
        }
        ("GET", ["fetch"]) => {
            let url = query(q, "url")
                .unwrap_or("")
                .replace("%3A", ":")
                .replace("%2F", "/");
            match http_request("GET", &url, &[]) {
                Ok((status, body)) => {
                    Response::new(200, format!("{status} {}", String::from_utf8_lossy(&body)))
                }
                Err(error) => Response::new(502, format!("error: {error}")),
            }
        }
        ("POST", ["kvbench", store]) => {
            let n: usize = query(q, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000)
                .max(1);
            match kv_bench(store, query(q, "op").unwrap_or("get"), n) {
                Ok(text) => Response::new(200, text),
                Err(e) => kv_error(e),
            }
        }
        _ => Response::new(404, format!("no such operation: {} {path}", request.method)),
    }
}

/// Times `n` gets or sets of a 100-byte value with the guest's monotonic clock.
fn kv_bench(store: &str, op: &str, n: usize) -> Result<String, meshwa_sdk::kv::Error> {
    let store = Store::open(store)?;
    let value = [b'v'; 100];
    store.set("bench-key", &value)?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = std::time::Instant::now();
        match op {
            "set" => store.set(&format!("bench-{}", i % 100), &value)?,
            _ => {
                std::hint::black_box(store.get("bench-key")?);
            }
        }
        samples.push(started.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Ok(format!("{} {}", at(0.5), at(0.99)))
}

meshwa_sdk::http_handler!(handle);
