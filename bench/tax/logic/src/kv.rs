//! The key-value store the services read, and the records it holds (JSON values).

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ServiceError;
use crate::model::{TaxClass, Tier};

/// The only store operation the services use. Each deployment brings its own: Redis over
/// loopback natively, the host's store in meshwa, a map in tests.
pub trait Kv {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
}

/// An in-process store, e.g. loaded with [`crate::dataset`].
#[derive(Debug, Default, Clone)]
pub struct MemoryKv(HashMap<String, Vec<u8>>);

impl MemoryKv {
    /// A store holding [`crate::dataset`].
    pub fn with_dataset() -> Self {
        crate::dataset().into_iter().collect()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.0.insert(key.into(), value);
    }

    pub fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        self.0.remove(key)
    }
}

impl FromIterator<(String, Vec<u8>)> for MemoryKv {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }
}

/// Reads and parses a JSON record; a record that does not parse is our own fault.
pub(crate) fn get_json<T: DeserializeOwned>(
    kv: &dyn Kv,
    key: &str,
) -> Result<Option<T>, ServiceError> {
    match kv.get(key) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ServiceError::internal(format!("corrupt record {key}: {e}"))),
    }
}

/// The store's key scheme.
pub mod keys {
    use crate::model::Destination;

    pub fn user(id: &str) -> String {
        format!("user:{id}")
    }
    pub fn product(sku: &str) -> String {
        format!("product:{sku}")
    }
    pub fn price(sku: &str) -> String {
        format!("price:{sku}")
    }
    pub fn stock(sku: &str) -> String {
        format!("stock:{sku}")
    }
    pub fn coupon(code: &str) -> String {
        format!("coupon:{code}")
    }
    pub fn region(destination: &Destination) -> String {
        if destination.region.is_empty() {
            format!("region:{}", destination.country)
        } else {
            format!("region:{}-{}", destination.country, destination.region)
        }
    }
    pub fn locale(country: &str) -> String {
        format!("locale:{country}")
    }
}

/// `user:ID`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub email: String,
    pub tier: Tier,
    /// The key the user's tokens are signed with, hex.
    pub token_key: String,
}

/// `product:SKU`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub weight_g: u32,
    /// The most one order may hold.
    pub max_quantity: u32,
    pub tax_class: TaxClass,
    /// Whether a line may carry a personalization (engraving, printed dedication).
    pub personalizable: bool,
    /// Option name to allowed values; the first value is the default.
    pub options: BTreeMap<String, Vec<String>>,
}

/// `price:SKU`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceEntry {
    pub cents: i64,
    /// A markdown in basis points, 0 when not on sale.
    pub sale_bp: i64,
    /// Volume discounts; the best one whose `min_quantity` is reached applies.
    pub volume: Vec<VolumeDiscount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeDiscount {
    pub min_quantity: u32,
    pub bp: i64,
}

/// `stock:SKU`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StockEntry {
    pub warehouses: Vec<WarehouseStock>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarehouseStock {
    pub id: String,
    pub zone: String,
    pub quantity: u32,
}

/// `coupon:CODE`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CouponEntry {
    pub discount: CouponDiscount,
    pub min_subtotal_cents: i64,
    /// Only lines of this category count, when set.
    pub category: Option<String>,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponDiscount {
    Percent { bp: i64 },
    Amount { cents: i64 },
}

/// `region:COUNTRY` or `region:COUNTRY-REGION`: taxes and shipping of a destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionEntry {
    pub currency: String,
    /// Warehouses of this zone ship fastest.
    pub zone: String,
    pub standard_bp: i64,
    pub reduced_bp: i64,
    pub shipping_base_cents: i64,
    pub shipping_per_kg_cents: i64,
    pub free_shipping_over_cents: i64,
}

/// `locale:COUNTRY`: how the receipt writes money, dates and its labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocaleEntry {
    pub lang: String,
    pub currency_symbol: String,
    pub symbol_first: bool,
    pub decimal_sep: String,
    pub thousands_sep: String,
    /// `dmy` or `mdy`.
    pub date_order: String,
    pub labels: BTreeMap<String, String>,
}
