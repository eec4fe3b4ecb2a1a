//! The five services of the checkout benchmark (`bench/tax`) exported as WIT interfaces
//! (`shop:checkout/{auth,cart,pricing,inventory,render}`, wit/shop.wit), for typed calls: the
//! gateway `tax-shop-typed` imports them and meshwa composes it with this component at load
//! (`kind = "exports"` in bench/tax/meshwa-typed.toml, one function per service).
//!
//! Each export converts the WIT request to tax-logic's message, runs tax-logic's service on the
//! key-value store `catalog`, and converts the answer (or the error) back: the same logic as
//! guests/tax-shop's services, with the WIT types in place of JSON or MessagePack.

wit_bindgen::generate!({ path: "wit", world: "services" });

use exports::shop::checkout::types as wit;
use meshwa_sdk::kv;

/// Conversions between `wit` and tax-logic's types (shared with tax-shop-typed).
mod convert {
    use super::wit;
    include!("convert.rs");
}

use convert::Convert;

/// The store `catalog` as tax-logic reads it.
struct Store(kv::Store);

impl tax_logic::Kv for Store {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key).ok().flatten()
    }
}

/// Runs `service` on a WIT request: converts it, opens the store, converts the answer back.
fn serve<Request, Response, Input, Output>(
    request: Request,
    service: fn(&Input, &dyn tax_logic::Kv) -> Result<Output, tax_logic::ServiceError>,
) -> Result<Response, wit::ServiceError>
where
    Request: Convert<Input>,
    Output: Convert<Response>,
{
    let store = kv::Store::open("catalog").map_err(|error| {
        tax_logic::ServiceError::internal(format!("cannot open the store: {error:?}")).convert()
    })?;
    service(&request.convert(), &Store(store))
        .map(Convert::convert)
        .map_err(Convert::convert)
}

struct Services;

impl exports::shop::checkout::auth::Guest for Services {
    fn auth(request: wit::AuthRequest) -> Result<wit::AuthResponse, wit::ServiceError> {
        serve(request, tax_logic::auth)
    }
}

impl exports::shop::checkout::cart::Guest for Services {
    fn cart(request: wit::CartRequest) -> Result<wit::CartResponse, wit::ServiceError> {
        serve(request, tax_logic::cart)
    }
}

impl exports::shop::checkout::pricing::Guest for Services {
    fn pricing(request: wit::PricingRequest) -> Result<wit::PricingResponse, wit::ServiceError> {
        serve(request, tax_logic::pricing)
    }
}

impl exports::shop::checkout::inventory::Guest for Services {
    fn inventory(
        request: wit::InventoryRequest,
    ) -> Result<wit::InventoryResponse, wit::ServiceError> {
        serve(request, tax_logic::inventory)
    }
}

impl exports::shop::checkout::render::Guest for Services {
    fn render(request: wit::RenderRequest) -> Result<wit::RenderResponse, wit::ServiceError> {
        serve(request, tax_logic::render)
    }
}

export!(Services);

// Every request gets a fresh instance, so memory need not be reused within one: a bump allocator
// is enough, and cheaper than the standard one (see `meshwa_sdk::alloc`). A checkout allocates
// less than its 1 MiB of reserved memory, so no request grows memory (growth cost the server
// 13.6 % of its CPU in page-protection changes and TLB flushes; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: meshwa_sdk::alloc::RequestArena<{ 1 << 20 }> =
    meshwa_sdk::alloc::RequestArena::new();
