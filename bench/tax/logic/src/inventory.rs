//! inventory: decides, line by line, which warehouses ship what and what is backordered.
//! Reads stock only; reserving it is a later step of the real flow, outside this benchmark.

use std::collections::HashMap;

use crate::kv::{Kv, RegionEntry, StockEntry, get_json, keys};
use crate::model::{Allocation, Availability, InventoryRequest, InventoryResponse, Pick};
use crate::{MAX_LINES, MAX_QUANTITY, ServiceError};

const LOCAL_DAYS: u32 = 2;
const REMOTE_DAYS: u32 = 6;
const BACKORDER_DAYS: u32 = 21;

pub fn inventory(req: &InventoryRequest, kv: &dyn Kv) -> Result<InventoryResponse, ServiceError> {
    if req.lines.is_empty() || req.lines.len() > MAX_LINES {
        return Err(ServiceError::bad_request(format!(
            "between 1 and {MAX_LINES} lines are needed"
        )));
    }
    let region: RegionEntry = get_json(kv, &keys::region(&req.destination))?.ok_or_else(|| {
        ServiceError::bad_request(format!("no shipping to {}", keys::region(&req.destination)))
    })?;

    // What is left per SKU, warehouses in pick order: lines of the same SKU share its stock.
    let mut remaining: HashMap<&str, Vec<(String, bool, u32)>> = HashMap::new();
    let mut lines = Vec::with_capacity(req.lines.len());
    let mut ships_in_days = 0;

    for query in &req.lines {
        if query.quantity == 0 || query.quantity > MAX_QUANTITY {
            return Err(ServiceError::bad_request(format!(
                "bad quantity {} of {}",
                query.quantity, query.sku
            )));
        }
        if !remaining.contains_key(query.sku.as_str()) {
            // A SKU that was never stocked simply has no stock.
            let stock: StockEntry = get_json(kv, &keys::stock(&query.sku))?.unwrap_or(StockEntry {
                warehouses: Vec::new(),
            });
            let mut warehouses: Vec<(String, bool, u32)> = stock
                .warehouses
                .into_iter()
                .map(|w| {
                    let local = w.zone == region.zone;
                    (w.id, local, w.quantity)
                })
                .collect();
            // Local warehouses first, then the fullest (fewer parcels), then by id for determinism.
            warehouses.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
            remaining.insert(query.sku.as_str(), warehouses);
        }
        let warehouses = remaining
            .get_mut(query.sku.as_str())
            .map(Vec::as_mut_slice)
            .unwrap_or_default();

        let mut wanted = query.quantity;
        let mut picks = Vec::new();
        let mut remote = false;
        for (id, local, available) in warehouses.iter_mut() {
            if wanted == 0 {
                break;
            }
            let take = wanted.min(*available);
            if take > 0 {
                picks.push(Pick {
                    warehouse: id.clone(),
                    quantity: take,
                });
                *available -= take;
                wanted -= take;
                remote |= !*local;
            }
        }
        let availability = match (picks.is_empty(), wanted > 0, remote) {
            (true, _, _) => Availability::Backorder,
            (false, true, _) => Availability::Partial,
            (false, false, true) => Availability::Remote,
            (false, false, false) => Availability::Local,
        };
        let days = match availability {
            Availability::Local => LOCAL_DAYS,
            Availability::Remote => REMOTE_DAYS,
            Availability::Partial | Availability::Backorder => BACKORDER_DAYS,
        };
        ships_in_days = ships_in_days.max(days);
        lines.push(Allocation {
            sku: query.sku.clone(),
            requested: query.quantity,
            picks,
            backordered: wanted,
            availability,
        });
    }
    Ok(InventoryResponse {
        lines,
        ships_in_days,
    })
}
