//! The web dashboard: static assets embedded in the binary (no CDN, nothing to install),
//! served open on the admin listener. The page holds no data: it asks for a token and reads
//! the JSON API with it, so it shows exactly what that token may see.
//!
//! Every asset is served with a Content-Security-Policy that allows only these assets and
//! requests to this listener: names, routes and errors a tenant chose are put in the page as
//! text by the script, and even a mistake there could not load or run anything else.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;

use super::{ApiError, Reply};

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/style.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// `GET /dashboard`.
pub(super) fn page() -> Reply {
    Ok(asset(INDEX, "text/html; charset=utf-8"))
}

/// `GET /dashboard/{asset}`.
pub(super) fn file(name: &str) -> Reply {
    match name {
        "app.js" => Ok(asset(SCRIPT, "text/javascript; charset=utf-8")),
        "style.css" => Ok(asset(STYLE, "text/css; charset=utf-8")),
        _ => Err(ApiError::NotFound(format!("no dashboard asset {name}"))),
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // A new binary may bring new assets: always revalidate.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
