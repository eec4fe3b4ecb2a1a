//! Exercises `meshwa:platform` through the Rust SDK: typed in-process calls with host-owned
//! buffers.
//!
//! Paths below are what follows the function's route.
//!
//! | path                                  | what it does                                             |
//! |---------------------------------------|----------------------------------------------------------|
//! | `/call/<function>/<path>?size=N`      | invokes `<function>` at `/<path>` with N bytes; answers `<status> <len>: <first 64 bytes>` or `error: <variant>` |
//! | `/moved`                              | uses a buffer after handing it to a call (must trap)     |
//! | `/slices?size=N`                      | makes one N-byte buffer and 1000 slices of it, reads 16 bytes |
//! | `/recurse`                            | invokes itself at `/recurse`, forever                    |
//! | `/hoard?size=N&count=M`               | makes M buffers of N bytes and keeps them all: `held M`   |
//! | `/fanout/<function>/<path>`           | invokes `<function>` at `/<path>` twice at once (`invoke_all`); answers both outcomes, one per line |

use meshwa_sdk::{Buffer, Call, Request, Response, invoke, invoke_all};

fn handle(request: Request) -> Response {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let size: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("size="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let payload = || Buffer::new(&(0..size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<_>>());

    // Paths arrive with the function's route in front: look at what follows it.
    if let Some((_, rest)) = path.split_once("/fanout/") {
        let (function, callee_path) = rest.split_once('/').unwrap_or((rest, ""));
        let callee_path = format!("/{callee_path}");
        let call = || Call {
            function,
            path: &callee_path,
            payload: payload(),
            headers: &[],
        };
        let answers: Vec<String> = invoke_all([call(), call()])
            .into_iter()
            .map(|outcome| match outcome {
                Ok(answer) => format!(
                    "{} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body.read_all())
                ),
                Err(error) => format!("error: {error:?}"),
            })
            .collect();
        return Response::new(200, answers.join("\n"));
    }
    if let Some((_, rest)) = path.split_once("/call/") {
        let (function, callee_path) = rest.split_once('/').unwrap_or((rest, ""));
        let function = function.replace(':', "/");
        return match invoke(
            &function,
            &format!("/{callee_path}"),
            payload(),
            &[("x-test", "1")],
        ) {
            Ok(answer) => {
                let len = answer.body.len();
                let head = answer.body.read(0, 64);
                Response::new(
                    200,
                    format!(
                        "{} {len}: {}",
                        answer.status,
                        String::from_utf8_lossy(&head)
                    ),
                )
            }
            Err(error) => Response::new(502, format!("error: {error:?}")),
        };
    }
    match path.rsplit('/').next().unwrap_or_default() {
        "moved" => {
            let buffer = payload();
            let handle = buffer.handle();
            let _ = invoke("nobody", "/", buffer, &[]);
            // SAFETY: deliberately wrong: the handle was moved into the call above. The host
            // must refuse it (a trap), not hand out the bytes.
            let stale = unsafe { Buffer::from_handle(handle) };
            Response::new(200, format!("still readable: {}", stale.len()))
        }
        "slices" => {
            let buffer = payload();
            let mut slices = Vec::with_capacity(1000);
            for i in 0..1000u64 {
                slices.push(buffer.slice(i, 1024));
            }
            let sample = slices[999].read(0, 16);
            Response::new(200, String::from_utf8_lossy(&sample).into_owned())
        }
        "hoard" => {
            let count: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("count="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let held: Vec<Buffer> = (0..count).map(|_| payload()).collect();
            Response::new(200, format!("held {}", held.len()))
        }
        "recurse" => match invoke("invoker", "/recurse", payload(), &[]) {
            Ok(answer) => Response::new(answer.status, answer.body.read_all()),
            Err(error) => Response::new(508, format!("error: {error:?}")),
        },
        _ => Response::new(404, "unknown path"),
    }
}

meshwa_sdk::http_handler!(handle);
