//! Priced lines to an HTML invoice, with every text escaped.

use meshwa_sdk::{Request, Response};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cents(value: &str) -> String {
    match value.parse::<u64>() {
        Ok(c) => format!("{}.{:02}", c / 100, c % 100),
        Err(_) => escape(value),
    }
}

fn handle(request: Request) -> Response {
    let text = String::from_utf8_lossy(&request.body);
    let mut rows = String::new();
    let mut summary = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            let value = if key == "rejected" {
                escape(value)
            } else {
                cents(value)
            };
            summary.push_str(&format!(
                "<tr><th>{}</th><td>{value}</td></tr>\n",
                escape(key)
            ));
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if let [sku, qty, price, total] = fields[..] {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(sku),
                escape(qty),
                cents(price),
                cents(total)
            ));
        }
    }
    let html = format!(
        "<!doctype html>\n<table class=\"lines\">\n<tr><th>SKU</th><th>Qty</th><th>Price</th><th>Total</th></tr>\n{rows}</table>\n<table class=\"summary\">\n{summary}</table>\n"
    );
    Response::new(200, html)
}

meshwa_sdk::http_handler!(handle);
