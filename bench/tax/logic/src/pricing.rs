//! pricing: prices every line (sale, volume and tier discounts, gift wrap), applies the coupon,
//! taxes by destination and adds shipping. Integer cents throughout.

use crate::kv::{CouponDiscount, CouponEntry, Kv, PriceEntry, RegionEntry, get_json, keys};
use crate::model::{
    CartLine, CouponOutcome, PricedLine, PricingRequest, PricingResponse, TaxClass, Tier,
};
use crate::{MAX_LINES, MAX_QUANTITY, ServiceError};

const GIFT_WRAP_CENTS: i64 = 299;

pub fn pricing(req: &PricingRequest, kv: &dyn Kv) -> Result<PricingResponse, ServiceError> {
    check_lines(&req.lines)?;
    let region: RegionEntry = get_json(kv, &keys::region(&req.destination))?.ok_or_else(|| {
        ServiceError::bad_request(format!("no shipping to {}", keys::region(&req.destination)))
    })?;
    let tier_bp = match req.tier {
        Tier::Standard => 0,
        Tier::Silver => 200,
        Tier::Gold => 500,
    };

    let mut lines = Vec::with_capacity(req.lines.len());
    for line in &req.lines {
        let price: PriceEntry = get_json(kv, &keys::price(&line.sku))?
            .ok_or_else(|| ServiceError::bad_request(format!("{} is not for sale", line.sku)))?;
        let quantity = i64::from(line.quantity);
        let unit_cents = price.cents - basis_points(price.sale_bp, price.cents);
        let list_cents = unit_cents * quantity;
        let volume_bp = price
            .volume
            .iter()
            .filter(|v| line.quantity >= v.min_quantity)
            .map(|v| v.bp)
            .max()
            .unwrap_or(0);
        let discount_cents = basis_points(volume_bp + tier_bp, list_cents);
        let gift_wrap_cents = if line.gift_wrap {
            GIFT_WRAP_CENTS * quantity
        } else {
            0
        };
        lines.push(PricedLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_cents,
            discount_cents,
            gift_wrap_cents,
            coupon_cents: 0,
            tax_cents: 0,
            net_cents: list_cents - discount_cents + gift_wrap_cents,
            price_changed: line.seen_unit_cents.is_some_and(|seen| seen != unit_cents),
        });
    }
    let subtotal_cents: i64 = lines.iter().map(|line| line.net_cents).sum();

    let coupon = match &req.coupon {
        Some(code) => Some(apply_coupon(code, req, subtotal_cents, &mut lines, kv)?),
        None => None,
    };
    let coupon_cents = coupon.as_ref().map_or(0, |coupon| coupon.discount_cents);

    // Tax per line, after its share of the coupon, at the rate of its class.
    for (priced, line) in lines.iter_mut().zip(&req.lines) {
        let rate_bp = match line.tax_class {
            TaxClass::Standard => region.standard_bp,
            TaxClass::Reduced => region.reduced_bp,
            TaxClass::Exempt => 0,
        };
        priced.tax_cents = basis_points(rate_bp, priced.net_cents);
    }
    let tax_cents = lines.iter().map(|line| line.tax_cents).sum();

    let goods_cents = subtotal_cents - coupon_cents;
    let shipping_cents = if goods_cents >= region.free_shipping_over_cents {
        0
    } else {
        let weight_g: u64 = req
            .lines
            .iter()
            .map(|line| u64::from(line.quantity) * u64::from(line.unit_weight_g))
            .sum();
        let started_kg = i64::try_from(weight_g.div_ceil(1000)).unwrap_or(i64::MAX / 2);
        region.shipping_base_cents + region.shipping_per_kg_cents.saturating_mul(started_kg)
    };

    Ok(PricingResponse {
        currency: region.currency,
        lines,
        subtotal_cents,
        coupon,
        shipping_cents,
        tax_cents,
        total_cents: goods_cents + shipping_cents + tax_cents,
    })
}

/// `bp` basis points of `cents`, rounded half up.
fn basis_points(bp: i64, cents: i64) -> i64 {
    (cents * bp + 5_000).div_euclid(10_000)
}

/// Quantities are bounded so that no amount can overflow.
fn check_lines(lines: &[CartLine]) -> Result<(), ServiceError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ServiceError::bad_request(format!(
            "between 1 and {MAX_LINES} lines are needed"
        )));
    }
    match lines
        .iter()
        .find(|line| line.quantity == 0 || line.quantity > MAX_QUANTITY)
    {
        Some(line) => Err(ServiceError::bad_request(format!(
            "bad quantity {} of {}",
            line.quantity, line.sku
        ))),
        None => Ok(()),
    }
}

/// Spreads the coupon's discount over the eligible lines in proportion to their amounts, so each
/// line is taxed on what is really paid for it.
fn apply_coupon(
    code: &str,
    req: &PricingRequest,
    subtotal_cents: i64,
    lines: &mut [PricedLine],
    kv: &dyn Kv,
) -> Result<CouponOutcome, ServiceError> {
    let code = code.trim().to_ascii_uppercase();
    let refuse = |code: String, reason: &str| {
        Ok(CouponOutcome {
            code,
            discount_cents: 0,
            refused: Some(reason.into()),
        })
    };
    if code.is_empty() || code.len() > 32 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return refuse(code.chars().take(32).collect(), "unknown coupon");
    }
    let Some(entry) = get_json::<CouponEntry>(kv, &keys::coupon(&code))? else {
        return refuse(code, "unknown coupon");
    };
    if entry.expires_at < req.at {
        return refuse(code, "expired");
    }
    if subtotal_cents < entry.min_subtotal_cents {
        return refuse(code, "subtotal below the coupon's minimum");
    }
    let eligible: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            entry
                .category
                .as_ref()
                .is_none_or(|category| *category == req.lines[i].category)
        })
        .filter(|&i| lines[i].net_cents > 0)
        .collect();
    let eligible_cents: i64 = eligible.iter().map(|&i| lines[i].net_cents).sum();
    if eligible_cents <= 0 {
        return refuse(code, "no eligible items");
    }
    let discount_cents = match entry.discount {
        CouponDiscount::Percent { bp } => basis_points(bp, eligible_cents),
        CouponDiscount::Amount { cents } => cents.min(eligible_cents),
    };

    let mut left = discount_cents;
    for (n, &i) in eligible.iter().enumerate() {
        // The last line takes the rounding remainder.
        let share = if n + 1 == eligible.len() {
            left
        } else {
            discount_cents * lines[i].net_cents / eligible_cents
        };
        lines[i].coupon_cents = share;
        lines[i].net_cents -= share;
        left -= share;
    }
    Ok(CouponOutcome {
        code,
        discount_cents,
        refused: None,
    })
}
