//! The messages exchanged by the services, as they travel in JSON between processes.
//!
//! Every service validates what it receives itself: in a distributed deployment its caller is
//! just another client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a client posts to the gateway's `/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    /// `USER.EXPIRES.HMAC`, see [`crate::issue_token`].
    pub token: String,
    /// When the client placed the order, in Unix seconds. Passed as data so the logic reads no
    /// clock and every deployment renders the same receipt.
    pub requested_at: u64,
    pub lines: Vec<LineItem>,
    pub shipping: Address,
    #[serde(default)]
    pub coupon: Option<String>,
    #[serde(default)]
    pub gift_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: u32,
    /// Option name to chosen value, as typed by the client (any case, stray spaces).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub gift_wrap: bool,
    /// Text printed or engraved on the item, where the product allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personalization: Option<String>,
    /// The unit price the client showed, in cents, so the receipt can flag a price change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_unit_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    /// State or province code; empty where the country has none that matters.
    #[serde(default)]
    pub region: String,
    /// ISO 3166 alpha-2.
    pub country: String,
}

/// Where an order ships to: what pricing and inventory need of the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub country: String,
    #[serde(default)]
    pub region: String,
}

// --- auth ---

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub token: String,
    /// The time at which the token must be valid, in Unix seconds.
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    pub tier: Tier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Standard,
    Silver,
    Gold,
}

// --- cart ---

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartRequest {
    pub user_id: String,
    pub lines: Vec<LineItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartResponse {
    /// Validated lines, identical ones merged, in the order first seen.
    pub lines: Vec<CartLine>,
    pub item_count: u32,
    pub weight_g: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub tax_class: TaxClass,
    pub quantity: u32,
    /// Every option of the product, lower-cased, defaults filled in.
    pub options: BTreeMap<String, String>,
    pub gift_wrap: bool,
    /// Trimmed, checked against the product.
    pub personalization: Option<String>,
    pub seen_unit_cents: Option<i64>,
    pub unit_weight_g: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxClass {
    Standard,
    Reduced,
    Exempt,
}

// --- pricing ---

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingRequest {
    pub tier: Tier,
    pub destination: Destination,
    #[serde(default)]
    pub coupon: Option<String>,
    /// The time at which coupons must be valid, in Unix seconds.
    pub at: u64,
    pub lines: Vec<CartLine>,
}

/// All amounts in integer cents of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingResponse {
    pub currency: String,
    /// One per request line, same order.
    pub lines: Vec<PricedLine>,
    pub subtotal_cents: i64,
    pub coupon: Option<CouponOutcome>,
    pub shipping_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_cents: i64,
    /// Tier and volume discounts.
    pub discount_cents: i64,
    pub gift_wrap_cents: i64,
    /// This line's share of the coupon.
    pub coupon_cents: i64,
    pub tax_cents: i64,
    /// What the line costs, coupon share deducted, tax excluded.
    pub net_cents: i64,
    /// The unit price differs from the one the client showed.
    pub price_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponOutcome {
    pub code: String,
    pub discount_cents: i64,
    /// Why a coupon gave nothing; a refused coupon never fails the checkout.
    pub refused: Option<String>,
}

// --- inventory ---

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRequest {
    pub destination: Destination,
    pub lines: Vec<StockQuery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockQuery {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryResponse {
    /// One per request line, same order.
    pub lines: Vec<Allocation>,
    /// When the whole order can have shipped, in days.
    pub ships_in_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: String,
    pub requested: u32,
    pub picks: Vec<Pick>,
    pub backordered: u32,
    pub availability: Availability,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pick {
    pub warehouse: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Everything from warehouses of the destination's zone.
    Local,
    /// Everything, partly from another zone.
    Remote,
    /// Some of it, the rest backordered.
    Partial,
    /// None of it.
    Backorder,
}

// --- render ---

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderRequest {
    pub requested_at: u64,
    pub customer: AuthResponse,
    pub shipping: Address,
    #[serde(default)]
    pub gift_message: Option<String>,
    pub cart: CartResponse,
    pub pricing: PricingResponse,
    pub inventory: InventoryResponse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderResponse {
    pub html: String,
}
