//! A `wasmtime serve` component (wstd) that uses what such components expect of their host:
//!
//! | request                  | answer                                                          |
//! | ------------------------ | --------------------------------------------------------------- |
//! | `GET  .../env/<NAME>`    | the environment variable's value, or 404 `unset`                 |
//! | `GET  .../kv/<key>`      | the value in the default store (`open("")`), or 404 `missing`    |
//! | `PUT  .../kv/<key>`      | stores the body there                                           |
//! | `GET  .../fetch?<url>`   | GET of `url`: `<status>`, or 502 `error: <wasi:http error code>` |
//! | `CONNECT` (any path)     | 200, no body (a tunnel would follow)                            |
//! | `GET  .../cut`           | 200 and one chunk of body, then a failure (the body is cut)     |
//! | `GET  .../stderr`        | writes stderr in pieces, each through its own stream handle     |

use wstd::http::body::Body;
use wstd::http::error::ErrorCode;
use wstd::http::{Client, Error, Method, Request, Response, StatusCode};
use wstd::io::AsyncWrite;

wit_bindgen::generate!({
    path: "../../wit/deps/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::store;

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.method() == Method::CONNECT {
        return Ok(Response::new(Body::empty()));
    }
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let answer = match (request.method().as_str(), segments.as_slice()) {
        ("GET", [.., "env", name]) => match std::env::var(name) {
            Ok(value) => text(200, value),
            Err(_) => text(404, "unset".to_owned()),
        },
        ("GET", [.., "kv", key]) => match store::open("").and_then(|b| b.get(key)) {
            Ok(Some(value)) => text(200, String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => text(404, "missing".to_owned()),
            Err(e) => text(500, format!("{e:?}")),
        },
        ("PUT", [.., "kv", key]) => {
            let value = request.body_mut().contents().await?.to_vec();
            match store::open("").and_then(|b| b.set(key, &value)) {
                Ok(()) => text(200, "stored".to_owned()),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        ("GET", [.., "fetch"]) => {
            let url = request.uri().query().unwrap_or_default().to_owned();
            let outbound = Request::get(url).body(Body::empty())?;
            match Client::new().send(outbound).await {
                Ok(response) => text(200, response.status().as_str().to_owned()),
                // The standard code, as a component checking for it would see it.
                Err(error) => match error.chain().find_map(|e| e.downcast_ref::<ErrorCode>()) {
                    Some(code) => text(502, format!("error: {code:?}")),
                    None => text(502, format!("error (no code): {error:#}")),
                },
            }
        }
        ("GET", [.., "cut"]) => {
            // One chunk goes out with the head; a moment later the body fails, and wstd's
            // server traps.
            let chunks = futures_lite::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok("the beginning, ".repeat(8)), 1)),
                    1 => {
                        wstd::task::sleep(wstd::time::Duration::from_millis(300)).await;
                        let error = std::io::Error::other("the guest gave up mid-body");
                        Some((Err(error), 2))
                    }
                    _ => None,
                }
            });
            Response::new(Body::from_try_stream(chunks))
        }
        ("GET", [.., "stderr"]) => {
            // Each write through a stream of its own, as `wstd::io::stderr()` gets one per call.
            for piece in [
                "part one, ",
                "part two\n",
                "\n",
                "after an empty line\n",
                "unterminated",
            ] {
                wstd::io::stderr().write_all(piece.as_bytes()).await?;
            }
            text(200, "written".to_owned())
        }
        _ => text(404, format!("no endpoint {path}")),
    };
    Ok(answer)
}

fn text(status: u16, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
}
