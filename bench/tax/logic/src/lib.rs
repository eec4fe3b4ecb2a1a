//! The business logic of the checkout application of the "infrastructure tax" benchmark,
//! written once and wrapped by every deployment (a native monolith, native services, meshwa
//! functions), so that all of them run identical code and produce identical bytes.
//!
//! ```text
//! gateway -> auth -> cart -> (pricing || inventory) -> render
//! ```
//!
//! Each service is a plain function `fn(&Input, &dyn Kv) -> Result<Output, ServiceError>`;
//! [`gateway`] holds the orchestration as steps, [`checkout_monolith`] runs it as plain calls.
//! No I/O, clock, randomness or threads here: the crate builds for wasm32-wasip2.

mod auth;
mod cart;
mod dataset;
mod error;
pub mod gateway;
mod hex;
mod inventory;
mod kv;
pub mod model;
mod pricing;
mod render;

pub use auth::{auth, issue_token};
pub use cart::cart;
pub use dataset::{
    BASE_TIME, PRODUCTS, TOKEN_EXPIRES_AT, USERS, dataset, sample_request, sku, user_id, user_key,
};
pub use error::{ErrorKind, ServiceError};
pub use inventory::inventory;
pub use kv::{
    CatalogEntry, CouponDiscount, CouponEntry, Kv, LocaleEntry, MemoryKv, PriceEntry, RegionEntry,
    StockEntry, UserRecord, VolumeDiscount, WarehouseStock, keys,
};
pub use model::*;
pub use pricing::pricing;
pub use render::{escape, render};

/// The most lines a request may have, at any service.
pub const MAX_LINES: usize = 200;
/// The most units of one line, at any service (keeps every amount far from overflowing).
pub const MAX_QUANTITY: u32 = 1_000;

/// The whole checkout as plain function calls: what the gateway orchestrates, in one process.
/// Answers the receipt's HTML.
pub fn checkout_monolith(req: &CheckoutRequest, kv: &dyn Kv) -> Result<String, ServiceError> {
    gateway::validate(req)?;
    let auth = auth(&gateway::auth_request(req), kv)?;
    let cart = cart(&gateway::cart_request(req, &auth), kv)?;
    let pricing = pricing(&gateway::pricing_request(req, &auth, &cart), kv)?;
    let inventory = inventory(&gateway::inventory_request(req, &cart), kv)?;
    let page = render(
        &gateway::render_request(req, &auth, &cart, &pricing, &inventory),
        kv,
    )?;
    Ok(gateway::checkout_html(page))
}

/// [`checkout_monolith`] of a request body.
pub fn checkout_monolith_json(body: &[u8], kv: &dyn Kv) -> Result<String, ServiceError> {
    checkout_monolith(&gateway::decode_checkout(body)?, kv)
}

/// The services that take JSON in and answer JSON (every one but the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Cart,
    Pricing,
    Inventory,
    Render,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Auth,
        Service::Cart,
        Service::Pricing,
        Service::Inventory,
        Service::Render,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Cart => "cart",
            Service::Pricing => "pricing",
            Service::Inventory => "inventory",
            Service::Render => "render",
        }
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
    }

    /// Runs the service on a JSON request body and answers the JSON response body: all a
    /// wrapper needs to do besides transport.
    pub fn handle_json(self, input: &[u8], kv: &dyn Kv) -> Result<Vec<u8>, ServiceError> {
        self.handle(Codec::Json, input, kv)
    }

    /// Runs the service on a request body in `codec` and answers in the same codec.
    pub fn handle(self, codec: Codec, input: &[u8], kv: &dyn Kv) -> Result<Vec<u8>, ServiceError> {
        fn run<I: serde::de::DeserializeOwned, O: serde::Serialize>(
            codec: Codec,
            input: &[u8],
            kv: &dyn Kv,
            service: fn(&I, &dyn Kv) -> Result<O, ServiceError>,
        ) -> Result<Vec<u8>, ServiceError> {
            let input: I = codec
                .decode(input)
                .map_err(|e| ServiceError::bad_request(format!("malformed request: {e}")))?;
            codec.encode(&service(&input, kv)?)
        }
        match self {
            Service::Auth => run(codec, input, kv, auth),
            Service::Cart => run(codec, input, kv, cart),
            Service::Pricing => run(codec, input, kv, pricing),
            Service::Inventory => run(codec, input, kv, inventory),
            Service::Render => run(codec, input, kv, render),
        }
    }
}

/// How a request or response of a service is encoded between two services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// JSON, as microservices talk (and every native deployment here).
    Json,
    /// MessagePack with field names: the same documents, binary (no escaping, no number
    /// formatting), for callers that need not speak JSON.
    MessagePack,
}

impl Codec {
    /// The media type that names the codec in a `content-type` header.
    pub fn media_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::MessagePack => "application/msgpack",
        }
    }

    /// The codec a `content-type` names; JSON when absent or unknown.
    pub fn from_media_type(media_type: Option<&str>) -> Codec {
        match media_type {
            Some(t) if t.eq_ignore_ascii_case("application/msgpack") => Codec::MessagePack,
            _ => Codec::Json,
        }
    }

    pub fn encode<T: serde::Serialize>(self, value: &T) -> Result<Vec<u8>, ServiceError> {
        match self {
            Codec::Json => serde_json::to_vec(value)
                .map_err(|e| ServiceError::internal(format!("cannot serialize: {e}"))),
            Codec::MessagePack => rmp_serde::to_vec_named(value)
                .map_err(|e| ServiceError::internal(format!("cannot serialize: {e}"))),
        }
    }

    pub fn decode<T: serde::de::DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MemoryKv {
        MemoryKv::with_dataset()
    }

    #[test]
    fn monolith_is_deterministic() {
        let kv = store();
        for i in 0..32 {
            let first = checkout_monolith(&sample_request(i), &kv).unwrap();
            let again = checkout_monolith(&sample_request(i), &MemoryKv::with_dataset()).unwrap();
            assert_eq!(first, again, "request {i}");
            assert!(
                first.len() > 4 * 1024,
                "request {i}: receipt of {} bytes",
                first.len()
            );
            assert!(first.starts_with("<!DOCTYPE html>") && first.ends_with("</html>\n"));
        }
        assert_ne!(
            checkout_monolith(&sample_request(1), &kv).unwrap(),
            checkout_monolith(&sample_request(2), &kv).unwrap()
        );
    }

    #[test]
    fn requests_are_4_to_8_kib_of_json() {
        for i in 0..256 {
            let len = serde_json::to_vec(&sample_request(i)).unwrap().len();
            assert!(
                (4 * 1024..=8 * 1024).contains(&len),
                "request {i} is {len} bytes"
            );
        }
    }

    #[test]
    fn user_text_is_escaped() {
        let kv = store();
        let html = (0..16)
            .map(|i| checkout_monolith(&sample_request(i), &kv).unwrap())
            .collect::<String>();
        assert!(html.contains("&lt;3 Love &amp; hugs from &quot;the gang&quot;"));
        assert!(!html.contains("<3"));
        assert!(!html.contains("<Dupont>"));
    }

    #[test]
    fn bad_token_is_refused() {
        let kv = store();
        let mut req = sample_request(3);
        // Flip the last hex digit of the signature.
        let last = if req.token.ends_with('0') { '1' } else { '0' };
        req.token.pop();
        req.token.push(last);
        let err = checkout_monolith(&req, &kv).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);

        let mut req = sample_request(3);
        req.token = issue_token(&user_id(3), BASE_TIME - 1, &user_key(&user_id(3)));
        assert_eq!(
            checkout_monolith(&req, &kv).unwrap_err(),
            ServiceError::unauthorized("token expired")
        );

        for token in ["", "garbage", "u1003.1.zz", "u1003..", "..."] {
            req.token = token.to_string();
            assert_eq!(
                checkout_monolith(&req, &kv).unwrap_err().kind,
                ErrorKind::Unauthorized,
                "{token:?}"
            );
        }
    }

    #[test]
    fn unknown_sku_is_refused() {
        let kv = store();
        let mut req = sample_request(5);
        req.lines[7].sku = "SKU-99999".into();
        let err = checkout_monolith(&req, &kv).unwrap_err();
        assert_eq!(err, ServiceError::bad_request("unknown sku SKU-99999"));
        assert_eq!(err.http_status(), 400);

        req.lines[7].sku = "<script>".into();
        assert_eq!(
            checkout_monolith(&req, &kv).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn bad_options_and_quantities_are_refused() {
        let kv = store();
        let mut req = sample_request(6);
        req.lines[0]
            .options
            .insert("engraving".into(), "yes".into());
        assert_eq!(
            checkout_monolith(&req, &kv).unwrap_err().kind,
            ErrorKind::BadRequest
        );

        let mut req = sample_request(6);
        req.lines[0].quantity = 500;
        let err = checkout_monolith(&req, &kv).unwrap_err();
        assert!(err.message.contains("exceeds the limit"), "{err}");
    }

    #[test]
    fn both_codecs_round_trip() {
        let kv = store();
        let req = sample_request(9);
        let body = serde_json::to_vec(&req).unwrap();
        assert_eq!(gateway::decode_checkout(&body).unwrap(), req);

        let auth_out = auth(&gateway::auth_request(&req), &kv).unwrap();
        let cart_out = cart(&gateway::cart_request(&req, &auth_out), &kv).unwrap();
        let pricing_req = gateway::pricing_request(&req, &auth_out, &cart_out);
        let pricing_out = pricing(&pricing_req, &kv).unwrap();
        let inventory_out = inventory(&gateway::inventory_request(&req, &cart_out), &kv).unwrap();
        let render_req =
            gateway::render_request(&req, &auth_out, &cart_out, &pricing_out, &inventory_out);
        fn round_trip<
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        >(
            value: &T,
        ) {
            for codec in [Codec::Json, Codec::MessagePack] {
                let bytes = codec.encode(value).unwrap();
                assert_eq!(&codec.decode::<T>(&bytes).unwrap(), value, "{codec:?}");
            }
        }
        round_trip(&auth_out);
        round_trip(&cart_out);
        round_trip(&pricing_req);
        round_trip(&pricing_out);
        round_trip(&inventory_out);
        round_trip(&render_req);

        // The JSON entry points give the same bytes as the typed calls.
        let html = checkout_monolith(&req, &kv).unwrap();
        assert_eq!(checkout_monolith_json(&body, &kv).unwrap(), html);
        let rendered = Service::Render
            .handle_json(&serde_json::to_vec(&render_req).unwrap(), &kv)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<RenderResponse>(&rendered)
                .unwrap()
                .html,
            html
        );

        // So does MessagePack, and a service answers in the codec it was asked in.
        let rendered = Service::Render
            .handle(
                Codec::MessagePack,
                &Codec::MessagePack.encode(&render_req).unwrap(),
                &kv,
            )
            .unwrap();
        let answer: RenderResponse = Codec::MessagePack.decode(&rendered).unwrap();
        assert_eq!(answer.html, html);
        assert_eq!(
            Codec::from_media_type(Some("application/msgpack")),
            Codec::MessagePack
        );
        assert_eq!(Codec::from_media_type(None), Codec::Json);

        let err = Service::Cart.handle_json(b"{not json", &kv).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert_eq!(ServiceError::from_json(&err.to_json()), err);
    }

    #[test]
    fn the_data_covers_every_case() {
        let kv = store();
        let mut availability = std::collections::HashSet::new();
        let mut coupon_refusals = std::collections::HashSet::new();
        let mut merged = 0;
        for i in 0..64 {
            let req = sample_request(i);
            let auth_out = auth(&gateway::auth_request(&req), &kv).unwrap();
            let cart_out = cart(&gateway::cart_request(&req, &auth_out), &kv).unwrap();
            merged += req.lines.len() - cart_out.lines.len();
            let inventory_out =
                inventory(&gateway::inventory_request(&req, &cart_out), &kv).unwrap();
            availability.extend(inventory_out.lines.iter().map(|line| line.availability));
            let pricing_out =
                pricing(&gateway::pricing_request(&req, &auth_out, &cart_out), &kv).unwrap();
            if let Some(coupon) = pricing_out.coupon {
                coupon_refusals.insert(coupon.refused);
            }
            let lines: i64 = pricing_out
                .lines
                .iter()
                .map(|l| l.net_cents + l.tax_cents)
                .sum();
            assert_eq!(
                lines + pricing_out.shipping_cents,
                pricing_out.total_cents,
                "request {i}"
            );
        }
        assert!(merged > 0, "no line was merged");
        assert_eq!(availability.len(), 4, "{availability:?}");
        assert!(coupon_refusals.contains(&None));
        assert!(coupon_refusals.contains(&Some("expired".to_string())));
        assert!(coupon_refusals.contains(&Some("unknown coupon".to_string())));
    }
}
