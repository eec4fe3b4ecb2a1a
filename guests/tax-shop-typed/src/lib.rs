//! The gateway of the checkout benchmark (`bench/tax`) with typed calls: it imports the five
//! services as WIT interfaces (`shop:checkout/*`, guests/tax-shop-services/wit) and calls them
//! as functions. meshwa composes it with tax-shop-services at load (bench/tax/meshwa-typed.toml),
//! so a call is an adapter copying component-model values between two instances' memories: no
//! host code, no HTTP request, no JSON or MessagePack on the way.
//!
//! Paths below are what follows the function's route:
//!
//! - `.../checkout/typed`: the checkout, the same steps as guests/tax-shop's `checkout/invoke`
//!   (pricing then inventory one after the other: a typed call blocks), the same receipt, and
//!   refusals answered the same way (the service error's status, its JSON as the body);
//! - `.../load`: writes the benchmark's dataset into the store `catalog` (it starts empty).

wit_bindgen::generate!({ path: "../tax-shop-services/wit", world: "gateway" });

use meshwa_sdk::{Request, Response, kv};
use shop::checkout::types as wit;
use tax_logic::{ServiceError, gateway};

/// Conversions between `wit` and tax-logic's types (written once, in tax-shop-services).
mod convert {
    use super::wit;
    include!("../../tax-shop-services/src/convert.rs");
}

use convert::Convert;

fn handle(request: Request) -> Response {
    let path = request.path.split('?').next().unwrap_or_default();
    let result = if path.ends_with("/checkout/typed") {
        checkout(&request.body).map(html)
    } else if path.ends_with("/load") {
        load()
    } else {
        return Response::new(404, format!("no such endpoint {path}\n"));
    };
    result.unwrap_or_else(|error| failure(&error))
}

fn html(page: String) -> Response {
    Response::new(200, page).with_header("content-type", "text/html; charset=utf-8")
}

/// As guests/tax-shop answers a refusal, so that both deployments answer the same bytes.
fn failure(error: &ServiceError) -> Response {
    Response::new(error.http_status(), error.to_json())
        .with_header("content-type", "application/json")
}

/// The steps of `tax_logic::checkout_monolith`, each service a typed call.
fn checkout(body: &[u8]) -> Result<String, ServiceError> {
    use shop::checkout::{auth, cart, inventory, pricing, render};
    let req = gateway::decode_checkout(body)?;
    gateway::validate(&req)?;
    let auth = call(gateway::auth_request(&req), auth::auth)?;
    let cart = call(gateway::cart_request(&req, &auth), cart::cart)?;
    let pricing = call(
        gateway::pricing_request(&req, &auth, &cart),
        pricing::pricing,
    )?;
    let inventory = call(
        gateway::inventory_request(&req, &cart),
        inventory::inventory,
    )?;
    let page = call(
        gateway::render_request(&req, &auth, &cart, &pricing, &inventory),
        render::render,
    )?;
    Ok(gateway::checkout_html(page))
}

/// Calls `service` with tax-logic's `input`: converts it to its WIT type and the answer (or the
/// service's error) back.
fn call<Input, Request, Response, Output>(
    input: Input,
    service: fn(&Request) -> Result<Response, wit::ServiceError>,
) -> Result<Output, ServiceError>
where
    Input: Convert<Request>,
    Response: Convert<Output>,
{
    service(&input.convert())
        .map(Convert::convert)
        .map_err(Convert::convert)
}

fn load() -> Result<Response, ServiceError> {
    let store = kv::Store::open("catalog")
        .map_err(|e| ServiceError::internal(format!("cannot open the store: {e:?}")))?;
    let entries = tax_logic::dataset();
    for chunk in entries.chunks(64) {
        store
            .set_many(chunk)
            .map_err(|e| ServiceError::internal(format!("cannot load the dataset: {e:?}")))?;
    }
    Ok(Response::new(200, format!("{} entries\n", entries.len())))
}

meshwa_sdk::http_handler!(handle);

// Every request gets a fresh instance, so memory need not be reused within one: a bump allocator
// is enough, and cheaper than the standard one (see `meshwa_sdk::alloc`). A checkout allocates
// less than its 1 MiB of reserved memory, so no request grows memory (growth cost the server
// 13.6 % of its CPU in page-protection changes and TLB flushes; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: meshwa_sdk::alloc::RequestArena<{ 1 << 20 }> =
    meshwa_sdk::alloc::RequestArena::new();
