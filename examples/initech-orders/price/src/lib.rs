//! Adds line totals and the invoice sums (8.25% tax, rounded half up to the cent) to validated
//! lines; keeps `#` lines.

use meshwa_sdk::{Request, Response};

const TAX_BASIS_POINTS: u64 = 825;

fn handle(request: Request) -> Response {
    let text = String::from_utf8_lossy(&request.body);
    let mut out = String::with_capacity(text.len() * 2);
    let mut subtotal: u64 = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (Some(qty), Some(price)) = (
            fields.get(1).and_then(|q| q.parse::<u64>().ok()),
            fields.get(2).and_then(|p| p.parse::<u64>().ok()),
        ) else {
            return Response::new(422, format!("unpriceable line {line:?}\n"));
        };
        let total = qty * price;
        subtotal += total;
        out.push_str(&format!("{line}\t{total}\n"));
    }
    let tax = (subtotal * TAX_BASIS_POINTS + 5_000) / 10_000;
    out.push_str(&format!(
        "#subtotal {subtotal}\n#tax {tax}\n#total {}\n",
        subtotal + tax
    ));
    Response::new(200, out)
}

meshwa_sdk::http_handler!(handle);
