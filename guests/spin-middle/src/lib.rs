//! The middle of the Spin chain (see `spin-front`): reached at `spin-middle.spin.internal`,
//! it calls `spin-back.spin.internal` and prefixes the answer.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let answer: Response =
        spin_sdk::http::send(Request::get("http://spin-back.spin.internal/spin-back/end")).await?;
    let body = String::from_utf8_lossy(answer.body()).into_owned();
    let path_info = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .unwrap_or("(none)");
    Ok(Response::new(200, format!("middle{path_info} > {body}")))
}
