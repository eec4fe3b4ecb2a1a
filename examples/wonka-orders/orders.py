"""`orders`: takes an order, has it priced, records it (Python, componentize-py).

POST /wonka/orders  {"customer": "ada", "items": [{"sku": "fudge", "qty": 2}]}
    -> 201 {"customer": "ada", "order": 1, "lines": [...], "total_cents": 500}
    The items go to the private `pricing` function (JavaScript) as JSON over in-process
    wasi:http; the order is kept in the `orders` store under `order/<customer>/<n>`, and the
    customer's count under `count/<customer>`.
GET /wonka/orders?customer=ada  -> 200 {"customer": "ada", "orders": 1, "last": {...}}
Bad JSON or a bad order answers 400, an unknown SKU 422 (as pricing says), with a JSON error.
"""

import json
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler, store
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)

MAX_ITEMS = 100


class Answer(Exception):
    """An answer other than success: its status and a JSON-able body."""

    def __init__(self, status: int, body: dict):
        super().__init__(body)
        self.status = status
        self.body = body


def read_body(incoming) -> bytes:
    """All of an incoming body (a request's or a response's)."""
    chunks = []
    with incoming:
        with incoming.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(64 * 1024))
                except Err:
                    break  # closed: the whole body is read
    return b"".join(chunks)


def write_body(body: OutgoingBody, data: bytes) -> None:
    with body.write() as stream:
        # blocking-write-and-flush takes at most 4096 bytes per call.
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i : i + 4096])


def parse_order(data: bytes) -> tuple[str, list]:
    try:
        order = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Answer(400, {"error": f"the body is not JSON: {e}"})
    customer = order.get("customer") if isinstance(order, dict) else None
    items = order.get("items") if isinstance(order, dict) else None
    if not isinstance(customer, str) or not customer or len(customer) > 64 or "/" in customer:
        raise Answer(400, {"error": "`customer` must be a name of 1 to 64 characters without '/'"})
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise Answer(400, {"error": f"`items` must be a list of 1 to {MAX_ITEMS} items"})
    return customer, items


def quote(items: list) -> dict:
    """Asks the `pricing` function for a quote, in-process."""
    request = OutgoingRequest(Fields.from_list([("content-type", b"application/json")]))
    request.set_method(Method_Post())
    request.set_scheme(Scheme_Http())
    request.set_authority("pricing.orders.internal")
    request.set_path_with_query("/quote")
    body = request.body()
    # Sent first, so that the callee reads the body while it is written.
    future = outgoing_handler.handle(request, None)
    write_body(body, json.dumps({"items": items}).encode())
    OutgoingBody.finish(body, None)
    with future.subscribe() as ready:
        ready.block()
    outcome = future.get()  # option<result<result<incoming-response, error-code>>>
    if outcome is None or isinstance(outcome, Err) or isinstance(outcome.value, Err):
        raise Answer(502, {"error": "pricing did not answer"})
    incoming = outcome.value.value
    status = incoming.status()
    answer = json.loads(read_body(incoming.consume()) or b"{}")
    if status != 200:
        raise Answer(status, answer)
    return answer


def place(data: bytes) -> tuple[int, dict]:
    customer, items = parse_order(data)
    priced = quote(items)
    orders = store.open("orders")
    count = int(orders.get(f"count/{customer}") or b"0") + 1
    record = {"customer": customer, "order": count, **priced}
    orders.set(f"order/{customer}/{count}", json.dumps(record).encode())
    orders.set(f"count/{customer}", str(count).encode())
    return 201, record


def history(path_with_query: str) -> tuple[int, dict]:
    customer = (parse_qs(urlsplit(path_with_query).query).get("customer") or [""])[0]
    if not customer:
        raise Answer(400, {"error": "say which customer: ?customer=NAME"})
    orders = store.open("orders")
    count = int(orders.get(f"count/{customer}") or b"0")
    last = orders.get(f"order/{customer}/{count}") if count else None
    return 200, {"customer": customer, "orders": count, "last": json.loads(last) if last else None}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            method = request.method()
            if isinstance(method, Method_Post):
                status, answer = place(read_body(request.consume()))
            elif isinstance(method, Method_Get):
                status, answer = history(request.path_with_query() or "/")
            else:
                raise Answer(405, {"error": "GET or POST"})
        except Answer as e:
            status, answer = e.status, e.body
        except Err as e:
            status, answer = 503, {"error": f"the store failed: {e.value}"}
        data = json.dumps(answer).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(status)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        write_body(body, data)
        OutgoingBody.finish(body, None)
