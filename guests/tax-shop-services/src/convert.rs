// Conversions between the WIT types of `shop:checkout/types` (wit/shop.wit) and tax-logic's
// messages, both ways. Shared by tax-shop-services (export bindings) and tax-shop-typed (import
// bindings), whose generated types are distinct Rust types with the same names and fields: each
// crate `include!`s this file inside a module where `wit` names its own generated `types`
// module, e.g.
//
//     mod convert {
//         use crate::shop::checkout::types as wit;
//         include!("../../tax-shop-services/src/convert.rs");
//     }
//
// A WIT record has the fields of its model type with the same names, so converting one is
// converting each field; `Convert` does that for the field types (strings and numbers as they
// are, lists and options element-wise, a map as its sorted list of pairs).

use std::collections::BTreeMap;

// tax-logic's root re-exports its `model` and its `ServiceError` and `ErrorKind`.
use tax_logic as logic;

/// `self` as a `T`: between a WIT type and its tax-logic twin (or a type and itself).
pub trait Convert<T> {
    fn convert(self) -> T;
}

macro_rules! unchanged {
    ($($t:ty),*) => {
        $(impl Convert<$t> for $t {
            fn convert(self) -> $t {
                self
            }
        })*
    };
}
unchanged!(String, bool, u32, u64, i64);

impl<A: Convert<B>, B> Convert<Vec<B>> for Vec<A> {
    fn convert(self) -> Vec<B> {
        self.into_iter().map(Convert::convert).collect()
    }
}

impl<A: Convert<B>, B> Convert<Option<B>> for Option<A> {
    fn convert(self) -> Option<B> {
        self.map(Convert::convert)
    }
}

impl Convert<Vec<(String, String)>> for BTreeMap<String, String> {
    fn convert(self) -> Vec<(String, String)> {
        self.into_iter().collect()
    }
}

impl Convert<BTreeMap<String, String>> for Vec<(String, String)> {
    fn convert(self) -> BTreeMap<String, String> {
        self.into_iter().collect()
    }
}

/// Both ways for records of the same fields. The struct literals must name every field, so a
/// field added on one side and not listed here fails to compile.
macro_rules! records {
    ($($name:ident { $($field:ident),* $(,)? })*) => {
        $(
            impl Convert<logic::$name> for wit::$name {
                fn convert(self) -> logic::$name {
                    logic::$name { $($field: self.$field.convert()),* }
                }
            }
            impl Convert<wit::$name> for logic::$name {
                fn convert(self) -> wit::$name {
                    wit::$name { $($field: self.$field.convert()),* }
                }
            }
        )*
    };
}

/// Both ways for enums of the same cases.
macro_rules! enums {
    ($($name:ident { $($case:ident),* $(,)? })*) => {
        $(
            impl Convert<logic::$name> for wit::$name {
                fn convert(self) -> logic::$name {
                    match self {
                        $(wit::$name::$case => logic::$name::$case),*
                    }
                }
            }
            impl Convert<wit::$name> for logic::$name {
                fn convert(self) -> wit::$name {
                    match self {
                        $(logic::$name::$case => wit::$name::$case),*
                    }
                }
            }
        )*
    };
}

records! {
    Destination { country, region }
    Address { name, street, city, postal_code, region, country }
    LineItem { sku, quantity, options, gift_wrap, personalization, seen_unit_cents }
    AuthRequest { token, at }
    AuthResponse { user_id, display_name, email, tier }
    CartRequest { user_id, lines }
    CartLine {
        sku, name, category, tax_class, quantity, options, gift_wrap, personalization,
        seen_unit_cents, unit_weight_g,
    }
    CartResponse { lines, item_count, weight_g }
    PricingRequest { tier, destination, coupon, at, lines }
    PricedLine {
        sku, quantity, unit_cents, discount_cents, gift_wrap_cents, coupon_cents, tax_cents,
        net_cents, price_changed,
    }
    CouponOutcome { code, discount_cents, refused }
    PricingResponse {
        currency, lines, subtotal_cents, coupon, shipping_cents, tax_cents, total_cents,
    }
    StockQuery { sku, quantity }
    InventoryRequest { destination, lines }
    Pick { warehouse, quantity }
    Allocation { sku, requested, picks, backordered, availability }
    InventoryResponse { lines, ships_in_days }
    RenderRequest { requested_at, customer, shipping, gift_message, cart, pricing, inventory }
    RenderResponse { html }
    ServiceError { kind, message }
}

enums! {
    Tier { Standard, Silver, Gold }
    TaxClass { Standard, Reduced, Exempt }
    Availability { Local, Remote, Partial, Backorder }
    ErrorKind { BadRequest, Unauthorized, Unavailable, Internal }
}
