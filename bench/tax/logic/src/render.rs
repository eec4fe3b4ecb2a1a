//! render: the HTML receipt, in the destination's locale, every piece of user text escaped.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::kv::{Kv, LocaleEntry, get_json, keys};
use crate::model::{Availability, RenderRequest, RenderResponse, Tier};
use crate::{ServiceError, hex};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}\
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd}\
.num{text-align:right}.sku{color:#777;font-size:.8em;margin-left:.5em}.backorder{color:#b00}\
.partial{color:#b60}.remote{color:#06b}.local{color:#080}.gift{font-style:italic}";

pub fn render(req: &RenderRequest, kv: &dyn Kv) -> Result<RenderResponse, ServiceError> {
    let (cart, pricing, inventory) = (&req.cart, &req.pricing, &req.inventory);
    let consistent = cart.lines.len() == pricing.lines.len()
        && cart.lines.len() == inventory.lines.len()
        && cart
            .lines
            .iter()
            .zip(&pricing.lines)
            .zip(&inventory.lines)
            .all(|((c, p), i)| {
                c.sku == p.sku
                    && c.sku == i.sku
                    && c.quantity == p.quantity
                    && c.quantity == i.requested
            });
    if !consistent {
        return Err(ServiceError::bad_request(
            "cart, pricing and inventory lines do not match",
        ));
    }
    let country = &req.shipping.country;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ServiceError::bad_request("malformed country"));
    }
    let locale: LocaleEntry = get_json(kv, &keys::locale(country))?
        .ok_or_else(|| ServiceError::bad_request(format!("no locale for {country}")))?;
    let page = Page { locale: &locale };
    let order_ref = order_reference(req);

    let mut html = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail: the fmt::Results below are ignored on purpose.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} {order_ref}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>{title}</h1>\n<p class=\"ref\">{order} <strong>{order_ref}</strong> &middot; {date}</p>\n</header>\n",
        lang = escape(&locale.lang),
        title = page.label("title", "Order confirmation"),
        order = page.label("order", "Order"),
        date = page.date(req.requested_at),
    );

    let customer = &req.customer;
    let tier = match customer.tier {
        Tier::Standard => "",
        Tier::Silver => " &middot; Silver member",
        Tier::Gold => " &middot; Gold member",
    };
    let address = &req.shipping;
    let _ = write!(
        html,
        "<section class=\"parties\">\n<div><h2>{customer_label}</h2>\n<p>{name}<br>{email}{tier}</p></div>\n\
         <div><h2>{ship_to}</h2>\n<address>{to}<br>{street}<br>{postal} {city}<br>{region}{sep}{country}</address></div>\n\
         </section>\n",
        customer_label = page.label("customer", "Customer"),
        name = escape(&customer.display_name),
        email = escape(&customer.email),
        ship_to = page.label("ship_to", "Ship to"),
        to = escape(&address.name),
        street = escape(&address.street),
        postal = escape(&address.postal_code),
        city = escape(&address.city),
        region = escape(&address.region),
        sep = if address.region.is_empty() { "" } else { " " },
        country = escape(country),
    );

    let _ = write!(
        html,
        "<table class=\"lines\">\n<thead><tr><th>{item}</th><th>{options}</th><th class=\"num\">{qty}</th>\
         <th class=\"num\">{unit}</th><th class=\"num\">{discount}</th><th class=\"num\">{amount}</th>\
         <th>{availability}</th></tr></thead>\n<tbody>\n",
        item = page.label("item", "Item"),
        options = page.label("options", "Options"),
        qty = page.label("quantity", "Qty"),
        unit = page.label("unit_price", "Unit price"),
        discount = page.label("discount", "Discount"),
        amount = page.label("amount", "Amount"),
        availability = page.label("availability", "Availability"),
    );
    for ((line, priced), allocation) in cart.lines.iter().zip(&pricing.lines).zip(&inventory.lines)
    {
        let _ = write!(
            html,
            "<tr><td>{}<span class=\"sku\">{}</span>",
            escape(&line.name),
            escape(&line.sku)
        );
        if line.gift_wrap {
            let _ = write!(
                html,
                " &#127873; {}",
                page.label("gift_wrapped", "gift-wrapped")
            );
        }
        if let Some(text) = &line.personalization {
            let _ = write!(html, "<br><q>{}</q>", escape(text));
        }
        html.push_str("</td><td>");
        for (n, (name, value)) in line.options.iter().enumerate() {
            let _ = write!(
                html,
                "{}{}: {}",
                if n > 0 { ", " } else { "" },
                escape(name),
                escape(value)
            );
        }
        let (class, status) = match allocation.availability {
            Availability::Local => ("local", page.label("in_stock", "In stock")),
            Availability::Remote => (
                "remote",
                page.label("remote_stock", "Ships from another warehouse"),
            ),
            Availability::Partial => ("partial", page.label("partial_stock", "Partly backordered")),
            Availability::Backorder => ("backorder", page.label("backorder", "Backordered")),
        };
        let unit_price = match line.seen_unit_cents {
            Some(seen) if priced.price_changed => {
                format!(
                    "<s>{}</s> {}",
                    page.money(seen),
                    page.money(priced.unit_cents)
                )
            }
            _ => page.money(priced.unit_cents),
        };
        let _ = write!(
            html,
            "</td><td class=\"num\">{}</td><td class=\"num\">{unit_price}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"{class}\">{status}",
            priced.quantity,
            page.money(-(priced.discount_cents + priced.coupon_cents)),
            page.money(priced.net_cents),
        );
        for (n, pick) in allocation.picks.iter().enumerate() {
            let _ = write!(
                html,
                "{}{}&times;{}",
                if n > 0 { ", " } else { " &middot; " },
                escape(&pick.warehouse),
                pick.quantity
            );
        }
        if allocation.backordered > 0 && !allocation.picks.is_empty() {
            let _ = write!(
                html,
                " (+{} {})",
                allocation.backordered,
                page.label("later", "later")
            );
        }
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody>\n</table>\n<table class=\"totals\">\n");

    let mut total_row = |label: &str, amount: String| {
        let _ = writeln!(
            html,
            "<tr><th>{label}</th><td class=\"num\">{amount}</td></tr>"
        );
    };
    total_row(
        page.label("subtotal", "Subtotal"),
        page.money(pricing.subtotal_cents),
    );
    if let Some(coupon) = &pricing.coupon {
        let label = format!(
            "{} {}",
            page.label("coupon", "Coupon"),
            escape(&coupon.code)
        );
        match &coupon.refused {
            None => total_row(&label, page.money(-coupon.discount_cents)),
            Some(reason) => total_row(&label, format!("&mdash; {}", escape(reason))),
        }
    }
    total_row(
        page.label("shipping", "Shipping"),
        page.money(pricing.shipping_cents),
    );
    total_row(page.label("tax", "Tax"), page.money(pricing.tax_cents));
    total_row(
        page.label("total", "Total"),
        format!("<strong>{}</strong>", page.money(pricing.total_cents)),
    );
    let _ = write!(
        html,
        "</table>\n<p class=\"estimate\">{} {} {} &middot; {} {} &middot; {:.1} kg</p>\n",
        page.label("ships_within", "Ships within"),
        inventory.ships_in_days,
        page.label("days", "days"),
        cart.item_count,
        page.label("items", "items"),
        cart.weight_g as f64 / 1000.0,
    );
    if let Some(message) = &req.gift_message {
        let _ = writeln!(
            html,
            "<blockquote class=\"gift\">{}</blockquote>",
            escape(message)
        );
    }
    let _ = write!(
        html,
        "<footer><p>{} {}</p></footer>\n</body>\n</html>\n",
        page.label("thanks", "Thank you for your order,"),
        escape(&customer.display_name),
    );
    Ok(RenderResponse { html })
}

/// A short reference that changes with anything that matters in the order.
fn order_reference(req: &RenderRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(req.customer.user_id.as_bytes());
    hasher.update(req.requested_at.to_le_bytes());
    for line in &req.pricing.lines {
        hasher.update(line.sku.as_bytes());
        hasher.update(line.quantity.to_le_bytes());
        hasher.update(line.net_cents.to_le_bytes());
    }
    hasher.update(req.pricing.total_cents.to_le_bytes());
    let digest = hex::encode(&hasher.finalize()).to_ascii_uppercase();
    format!("ORD-{}-{}-{}", &digest[0..4], &digest[4..8], &digest[8..12])
}

struct Page<'a> {
    locale: &'a LocaleEntry,
}

impl Page<'_> {
    /// Labels come from our own store and may carry entities, so they are not escaped.
    fn label<'a>(&'a self, key: &str, fallback: &'a str) -> &'a str {
        self.locale.labels.get(key).map_or(fallback, String::as_str)
    }

    /// `-1234567` -> `-$12,345.67` or `-12.345,67 €`.
    fn money(&self, cents: i64) -> String {
        let locale = self.locale;
        let units = (cents.unsigned_abs() / 100).to_string();
        let mut grouped = String::with_capacity(units.len() + units.len() / 3);
        for (i, digit) in units.chars().enumerate() {
            if i > 0 && (units.len() - i).is_multiple_of(3) {
                grouped.push_str(&locale.thousands_sep);
            }
            grouped.push(digit);
        }
        let number = format!(
            "{grouped}{}{:02}",
            locale.decimal_sep,
            cents.unsigned_abs() % 100
        );
        let sign = if cents < 0 { "&minus;" } else { "" };
        if locale.symbol_first {
            format!("{sign}{}{number}", locale.currency_symbol)
        } else {
            format!("{sign}{number}&nbsp;{}", locale.currency_symbol)
        }
    }

    fn date(&self, unix_seconds: u64) -> String {
        let (year, month, day) = civil_from_days(unix_seconds / 86_400);
        if self.locale.date_order == "mdy" {
            format!("{month:02}/{day:02}/{year}")
        } else {
            format!("{day:02}.{month:02}.{year}")
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''))
    {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(1_750_000_000 / 86_400), (2025, 6, 15));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }
}
