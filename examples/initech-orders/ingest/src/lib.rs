//! `POST /initech/orders` with a CSV of `sku,qty,unit_price_cents` lines: runs the pipeline and
//! answers an HTML invoice. Mixes both call styles on purpose.

use meshwa_sdk::{Buffer, Request, Response, http_post, invoke};

fn handle(request: Request) -> Response {
    if request.method != "POST" {
        return Response::new(405, "POST a CSV of sku,qty,unit_price_cents lines\n");
    }
    // 1. parse, by invoke: the body moves to `parse` as a host-owned buffer.
    let parsed = match invoke("parse", "/", Buffer::new(&request.body), &[]) {
        Ok(answer) if answer.status == 200 => answer.body.read_all(),
        Ok(answer) => return Response::new(answer.status, answer.body.read_all()),
        Err(error) => return Response::new(502, format!("parse failed: {error:?}\n")),
    };
    // 2. validate, by plain wasi:http to the private sibling.
    let valid = match http_post("http://validate.orders.internal/", &parsed) {
        Ok((200, body)) => body,
        Ok((status, body)) => return Response::new(status, body),
        Err(error) => return Response::new(502, format!("validate failed: {error}\n")),
    };
    // 3. price, by invoke.
    let priced = match invoke("price", "/", Buffer::new(&valid), &[]) {
        Ok(answer) if answer.status == 200 => answer.body.read_all(),
        Ok(answer) => return Response::new(answer.status, answer.body.read_all()),
        Err(error) => return Response::new(502, format!("price failed: {error:?}\n")),
    };
    // 4. render, by wasi:http.
    match http_post("http://render.orders.internal/", &priced) {
        Ok((200, html)) => Response::new(200, html).with_header("content-type", "text/html"),
        Ok((status, body)) => Response::new(status, body),
        Err(error) => Response::new(502, format!("render failed: {error}\n")),
    }
}

meshwa_sdk::http_handler!(handle);
