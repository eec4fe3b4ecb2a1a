//! `POST <route>/<subject>` publishes the body on `<subject>` (of the tenant's), with the
//! header `x-sent-by: publisher`; it answers 200 `published`, or 403 with the bus's reason.

use meshwa_sdk::{Request, Response, messaging};

fn handle(request: Request) -> Response {
    let path = request.path.split('?').next().unwrap_or_default();
    // The route is the path's first two segments; the subject is the third.
    let Some(subject) = path.split('/').nth(3) else {
        return Response::new(400, "POST <route>/<subject>");
    };
    match messaging::publish(subject, &[("x-sent-by", "publisher")], &request.body) {
        Ok(()) => Response::new(200, "published"),
        Err(reason) => Response::new(403, reason),
    }
}

meshwa_sdk::http_handler!(handle);
