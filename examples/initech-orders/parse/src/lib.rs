//! CSV (`sku,qty,unit_price_cents`, optional header, blank lines and spaces allowed) to
//! tab-separated lines. Lines that do not have three fields become `!<line>` for `validate`.

use meshwa_sdk::{Request, Response};

fn handle(request: Request) -> Response {
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return Response::new(400, "the order list is not UTF-8\n");
    };
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("sku")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if let [sku, qty, price] = fields[..] {
            out.push_str(&format!("{}\t{qty}\t{price}\n", sku.to_ascii_uppercase()));
        } else {
            out.push_str(&format!("!{line}\n"));
        }
    }
    Response::new(200, out)
}

meshwa_sdk::http_handler!(handle);
