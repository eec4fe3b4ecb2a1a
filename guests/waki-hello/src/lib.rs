use waki::{ErrorCode, Request, Response, handler};

#[handler]
fn hello(request: Request) -> Result<Response, ErrorCode> {
    let path = request.path().to_owned();
    Response::builder()
        .header("content-type", "text/plain")
        .body(format!("hello from waki: {path}\n"))
        .build()
}
