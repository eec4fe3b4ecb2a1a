//! The end of the Spin chain (see `spin-front`): answers with a Spin variable.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    let greeting = spin_sdk::variables::get("greeting")?;
    Ok(Response::new(200, format!("back says {greeting}")))
}
