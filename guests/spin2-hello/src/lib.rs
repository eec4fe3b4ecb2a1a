//! A hello component written with spin-sdk 2.2 (see Cargo.toml for why it exists).

use spin_sdk::http::{IntoResponse, Request, Response};

#[spin_sdk::http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::new(200, "hello from spin-sdk 2"))
}
