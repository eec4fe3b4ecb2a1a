//! The store's preloaded data and the benchmark's requests, both generated deterministically so
//! that every deployment sees exactly the same bytes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::kv::{
    CatalogEntry, CouponDiscount, CouponEntry, LocaleEntry, PriceEntry, RegionEntry, StockEntry,
    UserRecord, VolumeDiscount, WarehouseStock, keys,
};
use crate::model::{Address, CheckoutRequest, LineItem, TaxClass, Tier};
use crate::{hex, issue_token};

pub const USERS: u32 = 100;
pub const PRODUCTS: u32 = 500;
/// Tokens of [`sample_request`] expire on 2100-01-01.
pub const TOKEN_EXPIRES_AT: u64 = 4_102_444_800;
/// `requested_at` of `sample_request(0)`: 2025-06-15.
pub const BASE_TIME: u64 = 1_750_000_000;

/// A 64-bit linear congruential generator (Knuth's MMIX constants): deterministic and enough
/// to vary generated data.
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        let mut lcg = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
        lcg.next();
        lcg
    }

    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// Uniform enough in `0..n`.
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    fn range(&mut self, low: u32, high_inclusive: u32) -> u32 {
        low + self.below(high_inclusive - low + 1)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u32) as usize]
    }
}

struct Category {
    name: &'static str,
    tax_class: TaxClass,
    personalizable: bool,
    nouns: &'static [&'static str],
    /// Option name and values, the first value the default.
    options: &'static [(&'static str, &'static [&'static str])],
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "apparel",
        tax_class: TaxClass::Standard,
        personalizable: true,
        nouns: &["T-Shirt", "Hoodie", "Rain Jacket", "Wool Socks", "Chinos"],
        options: &[
            ("size", &["m", "xs", "s", "l", "xl"]),
            ("color", &["black", "white", "navy", "red"]),
        ],
    },
    Category {
        name: "books",
        tax_class: TaxClass::Reduced,
        personalizable: true,
        nouns: &[
            "Cookbook",
            "Field Guide",
            "Novel",
            "Atlas",
            "Poetry Collection",
        ],
        options: &[("format", &["paperback", "hardcover"])],
    },
    Category {
        name: "kitchen",
        tax_class: TaxClass::Standard,
        personalizable: true,
        nouns: &[
            "Chef's Knife",
            "Dutch Oven",
            "Pepper Mill",
            "Kettle",
            "Cutting Board",
        ],
        options: &[("finish", &["steel", "black", "copper"])],
    },
    Category {
        name: "lighting",
        tax_class: TaxClass::Standard,
        personalizable: false,
        nouns: &["Desk Lamp", "Pendant Light", "String Lights", "Floor Lamp"],
        options: &[
            ("color", &["black", "white", "brass"]),
            ("bulb", &["warm", "cool"]),
        ],
    },
    Category {
        name: "grocery",
        tax_class: TaxClass::Reduced,
        personalizable: false,
        nouns: &[
            "Coffee Beans",
            "Olive Oil",
            "Green Tea",
            "Dark Chocolate",
            "Honey",
        ],
        options: &[("pack", &["single", "three-pack", "six-pack"])],
    },
    Category {
        name: "toys",
        tax_class: TaxClass::Standard,
        personalizable: false,
        nouns: &["Puzzle", "Building Blocks", "Kite", "Board Game"],
        options: &[],
    },
    Category {
        name: "garden",
        tax_class: TaxClass::Standard,
        personalizable: false,
        nouns: &["Planter", "Pruning Shears", "Watering Can", "Seed Kit"],
        options: &[("size", &["medium", "small", "large"])],
    },
    Category {
        name: "health",
        tax_class: TaxClass::Exempt,
        personalizable: false,
        nouns: &["First Aid Kit", "Thermometer", "Vitamin D", "Bandages"],
        options: &[],
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic", "Nordic", "Walnut", "Compact", "Deluxe", "Everyday", "Rustic", "Urban", "Alpine",
    "Coastal", "Vintage", "Modern", "Organic", "Heritage",
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Bjørn", "Chloé", "Dmitri", "Elif", "Femi", "Grace", "Hiro", "Inés", "Jonas", "Kwame",
    "Lena",
];
const LAST_NAMES: &[&str] = &[
    "O'Brien",
    "Müller",
    "Nakamura",
    "Smith & Sons",
    "García",
    "Kowalski",
    "<Dupont>",
    "Okafor",
    "Lindqvist",
];
const STREETS: &[&str] = &[
    "Baker Street",
    "Rue de Rivoli",
    "Hauptstraße",
    "Elm & Oak Avenue",
    "Keizersgracht",
    "Main St \"Unit B\"",
];

const PERSONALIZATIONS: &[&str] = &[
    "For Mum, with love",
    "J & K, 2025",
    "<b>Best Dad</b>",
    "Bon anniversaire, Zoë !",
    "Happy 30th, Sam!",
    "Property of the \"Night Owls\"",
];

const US_WAREHOUSES: &[&str] = &["nyc-1", "dal-2", "sfo-3"];
const EU_WAREHOUSES: &[&str] = &["fra-1", "ams-2"];

/// Every destination: (country, region, city).
const DESTINATIONS: &[(&str, &str, &str)] = &[
    ("US", "CA", "San Francisco"),
    ("US", "NY", "New York"),
    ("US", "TX", "Austin"),
    ("US", "WA", "Seattle"),
    ("DE", "", "Berlin"),
    ("FR", "", "Lyon"),
    ("NL", "", "Utrecht"),
];

pub fn sku(index: u32) -> String {
    format!("SKU-{}", 10_000 + index)
}

pub fn user_id(index: u32) -> String {
    format!("u{}", 1_000 + index)
}

/// The key user `id`'s tokens are signed with.
pub fn user_key(id: &str) -> Vec<u8> {
    Sha256::digest(format!("meshwa tax bench user key {id}")).to_vec()
}

fn user(index: u32) -> UserRecord {
    let mut rng = Lcg::new(0x5553_4552 + u64::from(index));
    let id = user_id(index);
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let tier = match index % 10 {
        0 => Tier::Gold,
        1 | 4 | 7 => Tier::Silver,
        _ => Tier::Standard,
    };
    UserRecord {
        email: format!("{}.{}@example.com", first.to_lowercase(), id),
        name: format!("{first} {last}"),
        tier,
        token_key: hex::encode(&user_key(&id)),
        id,
    }
}

fn category(index: u32) -> &'static Category {
    &CATEGORIES[(index as usize * 7 + 3) % CATEGORIES.len()]
}

fn product(index: u32) -> CatalogEntry {
    let mut rng = Lcg::new(0x5052_4f44 + u64::from(index));
    let category = category(index);
    let name = format!("{} {}", rng.pick(ADJECTIVES), rng.pick(category.nouns));
    let description = format!(
        "The {} from our {} range: built to last, {} and easy to care for. Ships in recyclable packaging.",
        name.to_lowercase(),
        category.name,
        rng.pick(&[
            "lightweight",
            "sturdy",
            "beautifully finished",
            "tested in our workshop"
        ]),
    );
    CatalogEntry {
        sku: sku(index),
        name,
        category: category.name.to_string(),
        description,
        weight_g: rng.range(50, 5_000),
        max_quantity: rng.range(10, 20),
        tax_class: category.tax_class,
        personalizable: category.personalizable,
        options: category
            .options
            .iter()
            .map(|(name, values)| {
                (
                    name.to_string(),
                    values.iter().map(|v| v.to_string()).collect(),
                )
            })
            .collect(),
    }
}

fn price(index: u32) -> PriceEntry {
    let mut rng = Lcg::new(0x5052_4943 + u64::from(index));
    PriceEntry {
        cents: i64::from(rng.range(199, 19_999)),
        sale_bp: if rng.chance(20) {
            i64::from(rng.range(10, 30)) * 100
        } else {
            0
        },
        volume: if rng.chance(40) {
            vec![
                VolumeDiscount {
                    min_quantity: 3,
                    bp: 300,
                },
                VolumeDiscount {
                    min_quantity: 6,
                    bp: 700,
                },
            ]
        } else {
            Vec::new()
        },
    }
}

fn stock(index: u32) -> StockEntry {
    let mut rng = Lcg::new(0x5354_4f43 + u64::from(index));
    // One product in eight is scarce, so partial and backordered lines occur.
    let scarce = rng.chance(12);
    let mut warehouses = Vec::new();
    for (zone, ids) in [("US", US_WAREHOUSES), ("EU", EU_WAREHOUSES)] {
        for id in ids {
            if rng.chance(55) {
                let quantity = if scarce {
                    rng.below(2)
                } else {
                    rng.range(0, 40)
                };
                warehouses.push(WarehouseStock {
                    id: id.to_string(),
                    zone: zone.to_string(),
                    quantity,
                });
            }
        }
    }
    StockEntry { warehouses }
}

fn coupons() -> Vec<(&'static str, CouponEntry)> {
    let far = TOKEN_EXPIRES_AT;
    vec![
        (
            "WELCOME10",
            CouponEntry {
                discount: CouponDiscount::Percent { bp: 1_000 },
                min_subtotal_cents: 2_000,
                category: None,
                expires_at: far,
            },
        ),
        (
            "LIGHT20",
            CouponEntry {
                discount: CouponDiscount::Percent { bp: 2_000 },
                min_subtotal_cents: 0,
                category: Some("lighting".into()),
                expires_at: far,
            },
        ),
        (
            "FIVEOFF",
            CouponEntry {
                discount: CouponDiscount::Amount { cents: 500 },
                min_subtotal_cents: 3_000,
                category: None,
                expires_at: far,
            },
        ),
        (
            "SPRING24",
            CouponEntry {
                discount: CouponDiscount::Percent { bp: 1_500 },
                min_subtotal_cents: 0,
                category: None,
                expires_at: 1_717_200_000,
            },
        ),
    ]
}

fn regions() -> Vec<(&'static str, &'static str, RegionEntry)> {
    let us = |standard_bp| RegionEntry {
        currency: "USD".into(),
        zone: "US".into(),
        standard_bp,
        reduced_bp: 0,
        shipping_base_cents: 599,
        shipping_per_kg_cents: 120,
        free_shipping_over_cents: 150_000,
    };
    let eu = |standard_bp, reduced_bp| RegionEntry {
        currency: "EUR".into(),
        zone: "EU".into(),
        standard_bp,
        reduced_bp,
        shipping_base_cents: 499,
        shipping_per_kg_cents: 90,
        free_shipping_over_cents: 100_000,
    };
    vec![
        ("US", "CA", us(725)),
        ("US", "NY", us(888)),
        ("US", "TX", us(625)),
        ("US", "WA", us(650)),
        ("DE", "", eu(1_900, 700)),
        ("FR", "", eu(2_000, 550)),
        ("NL", "", eu(2_100, 900)),
    ]
}

fn locales() -> Vec<(&'static str, LocaleEntry)> {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let locale = |lang: &str,
                  symbol: &str,
                  symbol_first,
                  decimal: &str,
                  thousands: &str,
                  date: &str,
                  pairs| {
        LocaleEntry {
            lang: lang.into(),
            currency_symbol: symbol.into(),
            symbol_first,
            decimal_sep: decimal.into(),
            thousands_sep: thousands.into(),
            date_order: date.into(),
            labels: labels(pairs),
        }
    };
    vec![
        (
            "US",
            locale(
                "en",
                "$",
                true,
                ".",
                ",",
                "mdy",
                &[("title", "Order confirmation")],
            ),
        ),
        (
            "DE",
            locale(
                "de",
                "€",
                false,
                ",",
                ".",
                "dmy",
                &[
                    ("title", "Bestellbestätigung"),
                    ("order", "Bestellung"),
                    ("customer", "Kunde"),
                    ("ship_to", "Lieferadresse"),
                    ("item", "Artikel"),
                    ("options", "Optionen"),
                    ("quantity", "Menge"),
                    ("unit_price", "Einzelpreis"),
                    ("discount", "Rabatt"),
                    ("amount", "Betrag"),
                    ("availability", "Verfügbarkeit"),
                    ("in_stock", "Auf Lager"),
                    ("backorder", "Nachbestellt"),
                    ("subtotal", "Zwischensumme"),
                    ("shipping", "Versand"),
                    ("tax", "MwSt."),
                    ("total", "Gesamt"),
                    ("ships_within", "Versand innerhalb von"),
                    ("days", "Tagen"),
                    ("items", "Artikel"),
                    ("thanks", "Vielen Dank für Ihre Bestellung,"),
                ],
            ),
        ),
        (
            "FR",
            locale(
                "fr",
                "€",
                false,
                ",",
                "&#8239;",
                "dmy",
                &[
                    ("title", "Confirmation de commande"),
                    ("order", "Commande"),
                    ("customer", "Client"),
                    ("ship_to", "Livraison à"),
                    ("item", "Article"),
                    ("quantity", "Qté"),
                    ("unit_price", "Prix unitaire"),
                    ("discount", "Remise"),
                    ("amount", "Montant"),
                    ("subtotal", "Sous-total"),
                    ("shipping", "Livraison"),
                    ("tax", "TVA"),
                    ("total", "Total"),
                    ("thanks", "Merci pour votre commande,"),
                ],
            ),
        ),
        (
            "NL",
            locale(
                "nl",
                "€",
                true,
                ",",
                ".",
                "dmy",
                &[
                    ("title", "Orderbevestiging"),
                    ("order", "Bestelling"),
                    ("ship_to", "Verzenden naar"),
                    ("subtotal", "Subtotaal"),
                    ("shipping", "Verzending"),
                    ("tax", "Btw"),
                    ("total", "Totaal"),
                    ("thanks", "Bedankt voor je bestelling,"),
                ],
            ),
        ),
    ]
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("the dataset's records serialize")
}

/// Everything every deployment loads into its store before a run: users with their token
/// keys, the catalog, prices, stock, coupons, regions (tax and shipping) and locales.
pub fn dataset() -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::with_capacity(USERS as usize + 3 * PRODUCTS as usize + 16);
    for index in 0..USERS {
        let user = user(index);
        records.push((keys::user(&user.id), json(&user)));
    }
    for index in 0..PRODUCTS {
        let sku = sku(index);
        records.push((keys::product(&sku), json(&product(index))));
        records.push((keys::price(&sku), json(&price(index))));
        records.push((keys::stock(&sku), json(&stock(index))));
    }
    for (code, coupon) in coupons() {
        records.push((keys::coupon(code), json(&coupon)));
    }
    for (country, region, entry) in regions() {
        let destination = crate::model::Destination {
            country: country.into(),
            region: region.into(),
        };
        records.push((keys::region(&destination), json(&entry)));
    }
    for (country, locale) in locales() {
        records.push((keys::locale(country), json(&locale)));
    }
    records
}

/// The `i`-th checkout of the benchmark: a valid order of 40 to 60 lines (4 to 8 KiB of JSON),
/// its options typed carelessly, some lines repeated, user text that needs escaping.
pub fn sample_request(i: u32) -> CheckoutRequest {
    let mut rng = Lcg::new(0x4f52_4445_5200_0000 + u64::from(i));
    let user_index = i % USERS;
    let user = user(user_index);

    let line_count = rng.range(40, 60);
    let mut lines: Vec<LineItem> = Vec::with_capacity(line_count as usize);
    // Per SKU, what the order holds so far: staying under every product's limit (at least 10).
    let mut per_sku: BTreeMap<u32, u32> = BTreeMap::new();
    while lines.len() < line_count as usize {
        // One line in eight repeats an earlier one, for the cart to merge.
        if !lines.is_empty() && rng.chance(12) {
            let again = lines[rng.below(lines.len() as u32) as usize].clone();
            let index = again.sku[4..].parse::<u32>().map_or(0, |n| n - 10_000);
            let held = per_sku.entry(index).or_default();
            if *held + again.quantity <= 9 {
                *held += again.quantity;
                lines.push(again);
            }
            continue;
        }
        let index = rng.below(PRODUCTS);
        let quantity = if rng.chance(15) {
            rng.range(3, 7)
        } else {
            rng.range(1, 2)
        };
        let held = per_sku.entry(index).or_default();
        if *held + quantity > 9 {
            continue;
        }
        *held += quantity;
        let mut options = BTreeMap::new();
        for (name, values) in category(index).options {
            if rng.chance(70) {
                let value = rng.pick(values);
                // As clients send them: capitalized, shouted, padded.
                let (name, value) = match rng.below(4) {
                    0 => (name.to_string(), value.to_string()),
                    1 => (capitalize(name), capitalize(value)),
                    2 => (name.to_string(), value.to_uppercase()),
                    _ => (format!(" {name}"), format!("{value} ")),
                };
                options.insert(name, value);
            }
        }
        let personalization = (category(index).personalizable && rng.chance(60))
            .then(|| rng.pick(PERSONALIZATIONS).to_string());
        // What the client showed: the current price, but now and then one from before a sale.
        let price = price(index);
        let unit_cents = price.cents - (price.cents * price.sale_bp + 5_000) / 10_000;
        let seen_unit_cents = if rng.chance(6) {
            price.cents + 100
        } else {
            unit_cents
        };
        lines.push(LineItem {
            sku: sku(index),
            quantity,
            options,
            gift_wrap: rng.chance(10),
            personalization,
            seen_unit_cents: Some(seen_unit_cents),
        });
    }

    let (country, region, city) = *rng.pick(DESTINATIONS);
    let shipping = Address {
        name: user.name.clone(),
        street: format!("{} {}", rng.range(1, 250), rng.pick(STREETS)),
        city: city.to_string(),
        postal_code: format!("{:05}", rng.range(10_000, 99_999)),
        region: region.to_string(),
        country: country.to_string(),
    };
    let coupon = match i % 8 {
        0 | 4 => Some("WELCOME10".to_string()),
        1 => Some("light20".to_string()),
        2 => Some("SPRING24".to_string()),
        5 => Some("FIVEOFF".to_string()),
        6 => Some("NOSUCHCODE".to_string()),
        _ => None,
    };
    let gift_message = i.is_multiple_of(3).then(|| {
        format!(
            "Happy birthday, {}! <3 Love & hugs from \"the gang\" — see you soon.",
            user.name
        )
    });

    CheckoutRequest {
        token: issue_token(&user.id, TOKEN_EXPIRES_AT, &user_key(&user.id)),
        requested_at: BASE_TIME + u64::from(i) * 61,
        lines,
        shipping,
        coupon,
        gift_message,
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
