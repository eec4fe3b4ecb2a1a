//! An initialization function that draws a random seed. A snapshot of it would give every
//! request the same seed, so meshwa must not take one: it serves the component as it is, and
//! each request draws its own. `GET /…` answers the seed in hex.

use std::sync::OnceLock;

use meshwa_sdk::{Request, Response};

static SEED: OnceLock<u64> = OnceLock::new();

fn init() {
    SEED.get_or_init(wasi::random::random::get_random_u64);
}

fn handle(_request: Request) -> Response {
    let seed = SEED.get_or_init(wasi::random::random::get_random_u64);
    Response::new(200, format!("{seed:016x}"))
}

meshwa_sdk::http_handler!(handle);
meshwa_sdk::pre_initialize!(init);
