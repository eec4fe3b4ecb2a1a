//! Keeps the lines with a valid SKU (3 to 20 of A-Z, 0-9, '-'), a quantity of 1 to 1000 and a
//! positive price below 1,000,000 cents; ends with `#rejected <n>`.

use meshwa_sdk::{Request, Response};

fn valid(line: &str) -> bool {
    let mut fields = line.split('\t');
    let (Some(sku), Some(qty), Some(price), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let sku_ok = (3..=20).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    let qty_ok = qty.parse::<u32>().is_ok_and(|q| (1..=1000).contains(&q));
    let price_ok = price
        .parse::<u64>()
        .is_ok_and(|p| (1..1_000_000).contains(&p));
    sku_ok && qty_ok && price_ok
}

fn handle(request: Request) -> Response {
    let text = String::from_utf8_lossy(&request.body);
    let mut out = String::with_capacity(text.len());
    let mut rejected = 0;
    for line in text.lines() {
        if valid(line) {
            out.push_str(line);
            out.push('\n');
        } else {
            rejected += 1;
        }
    }
    out.push_str(&format!("#rejected {rejected}\n"));
    Response::new(200, out)
}

meshwa_sdk::http_handler!(handle);
