//! The gateway's orchestration, as steps: each function builds the next downstream request from
//! the checkout request and the responses so far. A distributed gateway runs
//!
//! ```text
//! decode_checkout + validate
//!   -> auth(auth_request)
//!   -> cart(cart_request)
//!   -> pricing(pricing_request) || inventory(inventory_request)   (independent: call concurrently)
//!   -> render(render_request)
//!   -> checkout_html
//! ```
//!
//! and [`crate::checkout_monolith`] runs the same steps as plain calls, so every deployment
//! produces the same bytes.

use crate::model::{
    AuthRequest, AuthResponse, CartRequest, CartResponse, CheckoutRequest, Destination,
    InventoryRequest, InventoryResponse, PricingRequest, PricingResponse, RenderRequest,
    RenderResponse, StockQuery,
};
use crate::{MAX_LINES, ServiceError};

const MAX_TEXT: usize = 200;
const MAX_GIFT_MESSAGE: usize = 500;

/// Parses the body of `POST /checkout`.
pub fn decode_checkout(body: &[u8]) -> Result<CheckoutRequest, ServiceError> {
    serde_json::from_slice(body)
        .map_err(|e| ServiceError::bad_request(format!("malformed checkout request: {e}")))
}

/// The checks of the request's shape that belong at the edge; the services check the rest.
pub fn validate(req: &CheckoutRequest) -> Result<(), ServiceError> {
    if req.lines.is_empty() || req.lines.len() > MAX_LINES {
        return Err(ServiceError::bad_request(format!(
            "between 1 and {MAX_LINES} lines are needed"
        )));
    }
    let address = &req.shipping;
    for (field, value) in [
        ("name", &address.name),
        ("street", &address.street),
        ("city", &address.city),
        ("postal_code", &address.postal_code),
        ("region", &address.region),
    ] {
        if value.chars().count() > MAX_TEXT {
            return Err(ServiceError::bad_request(format!(
                "shipping {field} is too long"
            )));
        }
    }
    if address.name.trim().is_empty()
        || address.street.trim().is_empty()
        || address.city.trim().is_empty()
    {
        return Err(ServiceError::bad_request(
            "the shipping address is incomplete",
        ));
    }
    if address.country.len() != 2 || !address.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ServiceError::bad_request(
            "the shipping country must be an ISO 3166 alpha-2 code",
        ));
    }
    if req
        .gift_message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_GIFT_MESSAGE)
    {
        return Err(ServiceError::bad_request("the gift message is too long"));
    }
    Ok(())
}

pub fn auth_request(req: &CheckoutRequest) -> AuthRequest {
    AuthRequest {
        token: req.token.clone(),
        at: req.requested_at,
    }
}

pub fn cart_request(req: &CheckoutRequest, auth: &AuthResponse) -> CartRequest {
    CartRequest {
        user_id: auth.user_id.clone(),
        lines: req.lines.clone(),
    }
}

pub fn pricing_request(
    req: &CheckoutRequest,
    auth: &AuthResponse,
    cart: &CartResponse,
) -> PricingRequest {
    PricingRequest {
        tier: auth.tier,
        destination: destination(req),
        coupon: req.coupon.clone(),
        at: req.requested_at,
        lines: cart.lines.clone(),
    }
}

pub fn inventory_request(req: &CheckoutRequest, cart: &CartResponse) -> InventoryRequest {
    InventoryRequest {
        destination: destination(req),
        lines: cart
            .lines
            .iter()
            .map(|line| StockQuery {
                sku: line.sku.clone(),
                quantity: line.quantity,
            })
            .collect(),
    }
}

pub fn render_request(
    req: &CheckoutRequest,
    auth: &AuthResponse,
    cart: &CartResponse,
    pricing: &PricingResponse,
    inventory: &InventoryResponse,
) -> RenderRequest {
    RenderRequest {
        requested_at: req.requested_at,
        customer: auth.clone(),
        shipping: req.shipping.clone(),
        gift_message: req.gift_message.clone(),
        cart: cart.clone(),
        pricing: pricing.clone(),
        inventory: inventory.clone(),
    }
}

/// The body of the gateway's answer: `text/html; charset=utf-8`.
pub fn checkout_html(render: RenderResponse) -> String {
    render.html
}

fn destination(req: &CheckoutRequest) -> Destination {
    Destination {
        country: req.shipping.country.clone(),
        region: req.shipping.region.clone(),
    }
}
