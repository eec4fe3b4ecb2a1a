//! The caller side of the per-hop benchmark (`meshwa-bench hops`): `…/hop/<style>/<size>/<n>`
//! makes one payload of `<size>` bytes, then calls the private function `sink` `<n>` times,
//! timing each call with the monotonic clock, and answers `<p50 ns> <p99 ns>`.
//!
//! Styles: `invoke-full` (invoke; sink reads the whole payload), `invoke-head` (invoke; sink reads
//! 64 bytes), `http` (wasi:http to `sink.<app>.internal`; sink reads the whole payload). For
//! invoke, the payload buffer is made once and each call hands over a slice of it (no copy), as a
//! function would that produced its data once.

use meshwa_sdk::{Buffer, Request, Response, http_post, invoke};
use wasi::clocks::monotonic_clock;

fn handle(request: Request) -> Response {
    let parts: Vec<&str> = request.path.rsplit('/').take(3).collect();
    let [n, size, style] = parts[..] else {
        return Response::new(400, "use …/hop/<style>/<size>/<n>");
    };
    let (Ok(size), Ok(n)) = (size.parse::<usize>(), n.parse::<usize>()) else {
        return Response::new(400, "size and n are numbers");
    };
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let base = Buffer::new(&payload);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = monotonic_clock::now();
        let ok = match style {
            "invoke-full" | "invoke-head" => {
                let path = if style == "invoke-full" {
                    "/full"
                } else {
                    "/head"
                };
                matches!(invoke("sink", path, base.slice(0, size as u64), &[]), Ok(r) if r.status == 200)
            }
            "http" => matches!(
                http_post("http://sink.bench.internal/full", &payload),
                Ok((200, _))
            ),
            _ => return Response::new(400, "unknown style"),
        };
        times.push(monotonic_clock::now() - started);
        if !ok {
            return Response::new(502, "a call failed");
        }
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Response::new(200, format!("{} {}", pct(0.5), pct(0.99)))
}

meshwa_sdk::http_handler!(handle);
