//! Imports `test:typed/sink` and `test:typed/tally` (guests/typed-sink/wit) and calls them: the caller side of typed calls
//! between functions. Its manifest entry links the import to a function exporting the interface
//! (`[functions.imports]`); meshwa composes the two at load, or host-links them
//! (`link = "host"`). This code is the same either way.
//!
//! Paths below are what follows the function's route.
//!
//! | path                        | what it does                                                   |
//! |-----------------------------|----------------------------------------------------------------|
//! | `/values`                   | sends a record with one of every WIT kind; answers `intact` if what comes back is exactly the sink's documented change of it, else 500 and both values |
//! | `/bytes?size=N`             | sends N bytes; answers `<len> <first 16 bytes>` of what came back |
//! | `/check/empty`, `/check/full` | a `result` both ways: answers `ok <n>` or `err <message>`     |
//! | `/crash`                    | calls a function of the sink that traps                         |
//! | `/tally`                    | adds 1, 2 and 3 with `test:typed/tally`; answers the sum        |
//! | `/call-out/<function>`      | asks the sink to invoke `<function>`; answers `ok <status>` or `err <refusal>` |
//! | `/hop/<style>/<size>/<n>`   | `n` calls, timed, as `meshwa-bench hops` does: `typed-bytes` (a `list<u8>` of `size` bytes there and back) or `typed-record` (a record of about `size` bytes); answers `<p50 ns> <p99 ns>` |

wit_bindgen::generate!({
    path: "../typed-sink/wit",
    world: "typed-hopper",
    additional_derives: [PartialEq],
});

use meshwa_sdk::{Request, Response};
use test::typed::sink::{self, Blob, Color, Shape};
use wasi::clocks::monotonic_clock;

fn sample(data_len: usize) -> Blob {
    Blob {
        id: u64::MAX - 1,
        delta: -42,
        ratio: 0.125,
        flag: true,
        letter: 'é',
        name: "checkout ünïcode".to_owned(),
        tags: vec!["a".to_owned(), "bb".to_owned(), String::new()],
        data: (0..data_len).map(|i| (i % 251) as u8).collect(),
        note: Some("gift".to_owned()),
        color: Color::Blue,
        shape: Shape::Circle(1.5),
        pair: (7, "pair".to_owned()),
    }
}

/// What typed-sink's `take-record` makes of `value`.
fn expected(value: &Blob) -> Blob {
    Blob {
        id: value.id.wrapping_add(1),
        delta: value.delta + 1,
        ratio: value.ratio * 2.0,
        flag: !value.flag,
        letter: 'ê',
        name: value.name.to_uppercase(),
        tags: value.tags.iter().rev().cloned().collect(),
        data: value.data.iter().rev().copied().collect(),
        note: Some("[gift]".to_owned()),
        color: Color::Red,
        shape: Shape::Circle(3.0),
        pair: (8, "PAIR".to_owned()),
    }
}

fn handle(request: Request) -> Response {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let size: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("size="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    if path.ends_with("/values") {
        let sent = sample(5);
        let answer = sink::take_record(&sent);
        let want = expected(&sent);
        return if answer == want {
            Response::new(200, "intact")
        } else {
            Response::new(500, format!("got {answer:?}\nwanted {want:?}"))
        };
    }
    if path.ends_with("/bytes") {
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let answer = sink::take(&payload);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(16)]).into_owned();
        return Response::new(200, format!("{} {head}", answer.len()));
    }
    if path.ends_with("/check/empty") || path.ends_with("/check/full") {
        let payload = if path.ends_with("/full") {
            vec![1u8; 3]
        } else {
            Vec::new()
        };
        return match sink::check(&payload) {
            Ok(n) => Response::new(200, format!("ok {n}")),
            Err(message) => Response::new(200, format!("err {message}")),
        };
    }
    if path.ends_with("/tally") {
        return Response::new(200, test::typed::tally::add(&[1, 2, 3]).to_string());
    }
    if let Some((_, function)) = path.split_once("/call-out/") {
        return match sink::call_out(function) {
            Ok(status) => Response::new(200, format!("ok {status}")),
            Err(refusal) => Response::new(200, format!("err {refusal}")),
        };
    }
    if path.ends_with("/crash") {
        sink::crash();
        return Response::new(200, "the sink did not trap");
    }
    if let Some((_, hop)) = path.split_once("/hop/") {
        return hop_timings(hop);
    }
    Response::new(404, "unknown path")
}

fn hop_timings(hop: &str) -> Response {
    let parts: Vec<&str> = hop.split('/').collect();
    let [style, size, n] = parts[..] else {
        return Response::new(400, "use …/hop/<style>/<size>/<n>");
    };
    let (Ok(size), Ok(n)) = (size.parse::<usize>(), n.parse::<usize>()) else {
        return Response::new(400, "size and n are numbers");
    };
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    // The record's fixed fields take about 60 bytes; its data makes up the rest.
    let record = sample(size.saturating_sub(60));
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = monotonic_clock::now();
        let ok = match style {
            "typed-bytes" => sink::take(&payload).len() == size,
            "typed-record" => sink::take_record(&record).data.len() == record.data.len(),
            _ => return Response::new(400, "unknown style"),
        };
        times.push(monotonic_clock::now() - started);
        if !ok {
            return Response::new(502, "a call answered the wrong thing");
        }
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Response::new(200, format!("{} {}", pct(0.5), pct(0.99)))
}

meshwa_sdk::http_handler!(handle);
