//! cart: validates the lines against the catalog, normalizes their options and merges
//! identical lines.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::kv::{CatalogEntry, Kv, get_json, keys};
use crate::model::{CartLine, CartRequest, CartResponse, LineItem};
use crate::{MAX_LINES, ServiceError};

const MAX_PERSONALIZATION: usize = 40;

pub fn cart(req: &CartRequest, kv: &dyn Kv) -> Result<CartResponse, ServiceError> {
    if req.lines.is_empty() {
        return Err(ServiceError::bad_request("the cart is empty"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(ServiceError::bad_request(format!(
            "more than {MAX_LINES} lines"
        )));
    }

    // One catalog read per distinct SKU, as a real cart service would cache within a request.
    let mut catalog: HashMap<&str, CatalogEntry> = HashMap::new();
    let mut lines: Vec<CartLine> = Vec::with_capacity(req.lines.len());
    // Identity of a merged line (SKU, options, gift wrap) -> its index in `lines`.
    let mut merged: HashMap<String, usize> = HashMap::new();

    for item in &req.lines {
        check_sku(&item.sku)?;
        if item.quantity == 0 {
            return Err(ServiceError::bad_request(format!(
                "quantity of {} is zero",
                item.sku
            )));
        }
        let entry = match catalog.entry(item.sku.as_str()) {
            Entry::Occupied(slot) => slot.into_mut(),
            Entry::Vacant(slot) => {
                let entry: CatalogEntry =
                    get_json(kv, &keys::product(&item.sku))?.ok_or_else(|| {
                        ServiceError::bad_request(format!("unknown sku {}", item.sku))
                    })?;
                slot.insert(entry)
            }
        };
        let options = normalize_options(item, entry)?;
        let personalization = check_personalization(item, entry)?;

        let identity = line_identity(
            &item.sku,
            &options,
            item.gift_wrap,
            personalization.as_deref(),
        );
        let index = *merged.entry(identity).or_insert_with(|| {
            lines.push(CartLine {
                sku: item.sku.clone(),
                name: entry.name.clone(),
                category: entry.category.clone(),
                tax_class: entry.tax_class,
                quantity: 0,
                options,
                gift_wrap: item.gift_wrap,
                personalization,
                seen_unit_cents: item.seen_unit_cents,
                unit_weight_g: entry.weight_g,
            });
            lines.len() - 1
        });
        let line = &mut lines[index];
        line.quantity = line.quantity.saturating_add(item.quantity);
    }

    // Limits apply per SKU, across its lines.
    let mut per_sku: HashMap<&str, u32> = HashMap::new();
    for line in &lines {
        let total = per_sku.entry(line.sku.as_str()).or_default();
        *total = total.saturating_add(line.quantity);
    }
    for (sku, quantity) in &per_sku {
        let max = catalog.get(sku).map_or(0, |entry| entry.max_quantity);
        if *quantity > max {
            return Err(ServiceError::bad_request(format!(
                "quantity {quantity} of {sku} exceeds the limit of {max} per order"
            )));
        }
    }

    let item_count = lines.iter().map(|line| line.quantity).sum();
    let weight_g = lines
        .iter()
        .map(|line| u64::from(line.quantity) * u64::from(line.unit_weight_g))
        .sum();
    Ok(CartResponse {
        lines,
        item_count,
        weight_g,
    })
}

fn check_sku(sku: &str) -> Result<(), ServiceError> {
    let valid = !sku.is_empty()
        && sku.len() <= 32
        && sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "malformed sku {:?}",
            truncate(sku, 40)
        )))
    }
}

/// Lower-cases and trims the chosen options, checks them against the product's, and fills in
/// the defaults of the ones not chosen.
fn normalize_options(
    item: &LineItem,
    entry: &CatalogEntry,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut chosen = BTreeMap::new();
    for (name, value) in &item.options {
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_lowercase();
        let Some(allowed) = entry.options.get(&name) else {
            return Err(ServiceError::bad_request(format!(
                "{} has no option {:?}",
                item.sku,
                truncate(&name, 40)
            )));
        };
        if !allowed.contains(&value) {
            return Err(ServiceError::bad_request(format!(
                "{} has no {name} {:?}",
                item.sku,
                truncate(&value, 40)
            )));
        }
        chosen.insert(name, value);
    }
    for (name, allowed) in &entry.options {
        if !chosen.contains_key(name)
            && let Some(default) = allowed.first()
        {
            chosen.insert(name.clone(), default.clone());
        }
    }
    Ok(chosen)
}

fn check_personalization(
    item: &LineItem,
    entry: &CatalogEntry,
) -> Result<Option<String>, ServiceError> {
    let Some(text) = item
        .personalization
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
    else {
        return Ok(None);
    };
    if !entry.personalizable {
        return Err(ServiceError::bad_request(format!(
            "{} cannot be personalized",
            item.sku
        )));
    }
    if text.chars().count() > MAX_PERSONALIZATION || text.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(format!(
            "the personalization of {} must be at most {MAX_PERSONALIZATION} printable characters",
            item.sku
        )));
    }
    Ok(Some(text.to_string()))
}

fn line_identity(
    sku: &str,
    options: &BTreeMap<String, String>,
    gift_wrap: bool,
    personalization: Option<&str>,
) -> String {
    let mut identity = String::with_capacity(64);
    identity.push_str(sku);
    for (name, value) in options {
        identity.push('|');
        identity.push_str(name);
        identity.push('=');
        identity.push_str(value);
    }
    if gift_wrap {
        identity.push_str("|wrap");
    }
    if let Some(text) = personalization {
        identity.push_str("|text=");
        identity.push_str(text);
    }
    identity
}

/// At most `max` characters of `s`, for quoting client input in error messages.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}
