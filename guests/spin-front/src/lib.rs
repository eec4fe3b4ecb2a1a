//! The front of a three-component Spin app (`spin.toml` beside this crate): routes with
//! spin-sdk's router, Spin's key-value store and variables, and a chain through
//! `spin-middle.spin.internal` to `spin-back`. Nothing here knows about meshwa.

use spin_sdk::http::{IntoResponse, Params, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = spin_sdk::http::Router::new();
    router.get("/spin/hello/:name", hello);
    router.get("/spin/headers/*", headers);
    router.get("/spin/variable/:name", variable);
    router.get("/spin/kv/:key", kv_get);
    router.put("/spin/kv/:key", kv_put);
    router.get("/spin/keys", kv_keys);
    router.get_async("/spin/chain", chain);
    router.handle(req)
}

fn hello(_req: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let name = params.get("name").unwrap_or("nobody");
    Ok(Response::new(200, format!("hello, {name}")))
}

/// Echoes the Spin request headers the host set, one `name: value` line each.
fn headers(req: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let mut body = String::new();
    for name in [
        "spin-full-url",
        "spin-path-info",
        "spin-matched-route",
        "spin-base-path",
        "spin-component-route",
        "spin-raw-component-route",
        "spin-client-addr",
    ] {
        let value = req
            .header(name)
            .and_then(|v| v.as_str())
            .unwrap_or("(none)");
        body += &format!("{name}: {value}\n");
    }
    Ok(Response::new(200, body))
}

fn variable(_req: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let name = params.get("name").unwrap_or_default();
    Ok(match spin_sdk::variables::get(name) {
        Ok(value) => Response::new(200, value),
        Err(e) => Response::new(404, format!("{e:?}")),
    })
}

fn kv_get(_req: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    let key = params.get("key").unwrap_or_default();
    Ok(match store.get(key)? {
        Some(value) => Response::new(200, value),
        None => Response::new(404, "no such key"),
    })
}

/// Every key of the default store, one per line, in order.
fn kv_keys(_req: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    let mut keys = store.get_keys()?;
    keys.sort();
    Ok(Response::new(200, keys.join("\n")))
}

fn kv_put(req: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    store.set(params.get("key").unwrap_or_default(), req.body())?;
    // A store this component was not given is refused, as Spin refuses it.
    let other = match Store::open("elsewhere") {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    Ok(Response::new(200, format!("stored; elsewhere: {other}")))
}

/// Calls the middle component by its Spin name; it calls the back one. A refused call answers
/// 502 with the error.
async fn chain(_req: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let sent: Result<Response, _> = spin_sdk::http::send(Request::get(
        "http://spin-middle.spin.internal/spin-middle/hop",
    ))
    .await;
    Ok(match sent {
        Ok(answer) => {
            let body = String::from_utf8_lossy(answer.body()).into_owned();
            Response::new(200, format!("front > {body}"))
        }
        Err(error) => Response::new(502, format!("{error:?}")),
    })
}
