//! The checkout application of the infrastructure-tax benchmark (`bench/tax`) wrapped as meshwa
//! functions: the business logic is `tax-logic`, the same crate the native deployments run.
//!
//! One component serves every function of the app; the request path picks what it does:
//!
//! - `.../<service>` (`/auth`, `/cart`, `/pricing`, `/inventory`, `/render`): the service, JSON
//!   in, JSON out (how the native services answer too), or MessagePack when the request's
//!   `content-type` is `application/msgpack`;
//! - `.../checkout/invoke`: the gateway, calling the services with `meshwa:platform/invoke` and
//!   host-owned buffers, the documents in MessagePack (deployment c; `?codec=json` keeps JSON,
//!   to compare);
//! - `.../checkout/http`: the gateway, calling them with plain `wasi:http` requests; on meshwa to
//!   `http://<service>.shop.internal/` (in-process, deployment d), under `wasmtime serve` to the
//!   URL in the environment variable `TAX_<SERVICE>_URL` (over loopback, deployment e);
//! - `.../checkout/local`: the whole checkout in this one instance (the monolith's code, in the
//!   sandbox): what the logic costs in WebAssembly, without any call;
//! - `.../load`: writes the benchmark's dataset into the store (meshwa's store starts empty).
//!
//! The key-value store is `catalog` on meshwa; `wasmtime serve`'s in-memory store has only the
//! store `""`, chosen with `TAX_KV_STORE=`.

#[cfg(feature = "invoke")]
use meshwa_sdk::{Buffer, Call, invoke, invoke_all};
use meshwa_sdk::{Request, Response, http_post, kv};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tax_logic::model::{
    AuthResponse, CartResponse, InventoryResponse, PricingResponse, RenderResponse,
};
use tax_logic::{Codec, ServiceError, gateway};

/// The store, and whether its values are hex-encoded (`TAX_KV_HEX=1`: `wasmtime serve` takes
/// preset values on its command line, where a comma ends a value, and JSON is full of them).
struct Store(kv::Store, bool);

impl tax_logic::Kv for Store {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let value = self.0.get(key).ok().flatten()?;
        if !self.1 {
            return Some(value);
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        value
            .chunks(2)
            .map(|pair| Some(digit(pair[0])? << 4 | digit(*pair.get(1)?)?))
            .collect()
    }
}

fn handle(request: Request) -> Response {
    let path = request.path.split('?').next().unwrap_or_default();
    let store_name = std::env::var("TAX_KV_STORE").unwrap_or_else(|_| "catalog".to_owned());
    let store = match kv::Store::open(&store_name) {
        Ok(store) => Store(store, std::env::var("TAX_KV_HEX").is_ok_and(|v| v == "1")),
        Err(error) => {
            return failure(&ServiceError::internal(format!(
                "cannot open the store: {error:?}"
            )));
        }
    };
    // Behind a route the path keeps its prefix (`/shop/checkout/invoke` on meshwa); a service
    // is named by the last segment (`/auth`, or `/shop/auth`).
    let result = if path.ends_with("/checkout/local") {
        tax_logic::checkout_monolith_json(&request.body, &store).map(html)
    } else if path.ends_with("/checkout/invoke") {
        // `?codec=json` keeps JSON between the functions, to measure what MessagePack saves.
        let codec = if request.path.ends_with("?codec=json") {
            Codec::Json
        } else {
            Codec::MessagePack
        };
        checkout(&request.body, Style::Invoke(codec)).map(html)
    } else if path.ends_with("/checkout/http") {
        checkout(&request.body, Style::Http).map(html)
    } else if path.ends_with("/load") {
        load(&store)
    } else {
        let last = path.rsplit('/').next().unwrap_or_default();
        // A service answers in the encoding it was called with (JSON unless said otherwise).
        let codec = Codec::from_media_type(request.header("content-type"));
        match tax_logic::Service::from_name(last) {
            Some(service) => service.handle(codec, &request.body, &store).map(|answer| {
                Response::new(200, answer).with_header("content-type", codec.media_type())
            }),
            None => return Response::new(404, format!("no such endpoint {path}\n")),
        }
    };
    result.unwrap_or_else(|error| failure(&error))
}

fn html(page: String) -> Response {
    Response::new(200, page).with_header("content-type", "text/html; charset=utf-8")
}

fn failure(error: &ServiceError) -> Response {
    Response::new(error.http_status(), error.to_json())
        .with_header("content-type", "application/json")
}

fn load(store: &Store) -> Result<Response, ServiceError> {
    let entries = tax_logic::dataset();
    for chunk in entries.chunks(64) {
        store
            .0
            .set_many(chunk)
            .map_err(|e| ServiceError::internal(format!("cannot load the dataset: {e:?}")))?;
    }
    Ok(Response::new(200, format!("{} entries\n", entries.len())))
}

#[derive(Clone, Copy)]
enum Style {
    /// `meshwa:platform/invoke`, the documents in this codec.
    Invoke(Codec),
    Http,
}

/// The gateway: the same steps as `tax_logic::checkout_monolith`, each service a call.
/// Pricing and inventory are independent: with invoke they are called at once (`invoke_all`),
/// as the native gateway does; over wasi:http one after the other (the SDK's HTTP calls block).
fn checkout(body: &[u8], style: Style) -> Result<String, ServiceError> {
    let req = gateway::decode_checkout(body)?;
    gateway::validate(&req)?;
    let auth: AuthResponse = call(style, "auth", &gateway::auth_request(&req))?;
    let cart: CartResponse = call(style, "cart", &gateway::cart_request(&req, &auth))?;
    let pricing_request = gateway::pricing_request(&req, &auth, &cart);
    let inventory_request = gateway::inventory_request(&req, &cart);
    let (pricing, inventory): (PricingResponse, InventoryResponse) = match style {
        // Independent of each other: called at once, as the native gateway does.
        #[cfg(feature = "invoke")]
        Style::Invoke(codec) => call_both(
            codec,
            ("pricing", &pricing_request),
            ("inventory", &inventory_request),
        )?,
        _ => (
            call(style, "pricing", &pricing_request)?,
            call(style, "inventory", &inventory_request)?,
        ),
    };
    let render: RenderResponse = call(
        style,
        "render",
        &gateway::render_request(&req, &auth, &cart, &pricing, &inventory),
    )?;
    Ok(gateway::checkout_html(render))
}

/// Calls two services at once with invoke (see [`call`] for the codec).
#[cfg(feature = "invoke")]
fn call_both<I1: Serialize, O1: DeserializeOwned, I2: Serialize, O2: DeserializeOwned>(
    codec: Codec,
    (first, first_input): (&str, &I1),
    (second, second_input): (&str, &I2),
) -> Result<(O1, O2), ServiceError> {
    let headers = [("content-type", codec.media_type())];
    let (first_path, second_path) = (format!("/{first}"), format!("/{second}"));
    let [first_answer, second_answer] = invoke_all([
        Call {
            function: first,
            path: &first_path,
            payload: Buffer::new(&codec.encode(first_input)?),
            headers: &headers,
        },
        Call {
            function: second,
            path: &second_path,
            payload: Buffer::new(&codec.encode(second_input)?),
            headers: &headers,
        },
    ]);
    let first_answer =
        first_answer.map_err(|e| ServiceError::internal(format!("{first}: {e:?}")))?;
    let second_answer =
        second_answer.map_err(|e| ServiceError::internal(format!("{second}: {e:?}")))?;
    Ok((
        decode_answer(
            codec,
            first,
            first_answer.status,
            &first_answer.body.read_all(),
        )?,
        decode_answer(
            codec,
            second,
            second_answer.status,
            &second_answer.body.read_all(),
        )?,
    ))
}

/// A service's answer: its document, or the failure it reported.
fn decode_answer<O: DeserializeOwned>(
    codec: Codec,
    service: &str,
    status: u16,
    answer: &[u8],
) -> Result<O, ServiceError> {
    if status != 200 {
        // Failures are JSON whatever the codec (`ServiceError::to_json`).
        return Err(ServiceError::from_json(answer));
    }
    codec.decode(answer).map_err(|e| {
        ServiceError::internal(format!("{service} answered a malformed document: {e}"))
    })
}

/// Calls `service`. With invoke the documents travel as MessagePack, in host-owned buffers:
/// services of one meshwa app need not speak JSON to each other, and the profile of deployment
/// (c) found JSON encoding and parsing the largest cost inside the sandbox. Over wasi:http they
/// stay JSON, as any HTTP service would send them.
fn call<I: Serialize, O: DeserializeOwned>(
    style: Style,
    service: &str,
    input: &I,
) -> Result<O, ServiceError> {
    let codec = match style {
        Style::Invoke(codec) => codec,
        Style::Http => Codec::Json,
    };
    let body = codec.encode(input)?;
    let path = format!("/{service}");
    let (status, answer) = match style {
        #[cfg(not(feature = "invoke"))]
        Style::Invoke(_) => {
            return Err(ServiceError::internal("built without the invoke feature"));
        }
        #[cfg(feature = "invoke")]
        Style::Invoke(_) => {
            let headers = [("content-type", codec.media_type())];
            let response = invoke(service, &path, Buffer::new(&body), &headers)
                .map_err(|e| ServiceError::internal(format!("{service}: {e:?}")))?;
            (response.status, response.body.read_all())
        }
        Style::Http => {
            let variable = format!("TAX_{}_URL", service.to_ascii_uppercase());
            let url = std::env::var(variable)
                .unwrap_or_else(|_| format!("http://{service}.shop.internal{path}"));
            http_post(&url, &body).map_err(|e| ServiceError::internal(format!("{service}: {e}")))?
        }
    };
    decode_answer(codec, service, status, &answer)
}

meshwa_sdk::http_handler!(handle);

// Every request gets a fresh instance, so memory need not be reused within one: a bump allocator
// is enough, and cheaper than the standard one (see `meshwa_sdk::alloc`). A checkout allocates
// less than its 1 MiB of reserved memory, so no request grows memory (growth cost the server
// 13.6 % of its CPU in page-protection changes and TLB flushes; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: meshwa_sdk::alloc::RequestArena<{ 1 << 20 }> =
    meshwa_sdk::alloc::RequestArena::new();
