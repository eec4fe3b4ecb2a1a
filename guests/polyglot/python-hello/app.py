"""A wasi:http/proxy "hello" function in Python (built with componentize-py).

Answers every request with 200, `content-type: text/plain` and
`hello from python\n`, or `hello, X, from python\n` when the query has `name=X`.
"""

from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def greeting(path_with_query: str | None) -> str:
    """The body for a request to `path_with_query` (e.g. `/greet?name=Ada`)."""
    query = urlsplit(path_with_query or "/").query
    names = parse_qs(query).get("name")
    if names and names[0]:
        return f"hello, {names[0]}, from python\n"
    return "hello from python\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        body_bytes = greeting(request.path_with_query()).encode("utf-8")

        headers = Fields.from_list([
            ("content-type", b"text/plain"),
            ("content-length", str(len(body_bytes)).encode("ascii")),
        ])
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))

        # blocking-write-and-flush takes at most 4096 bytes per call.
        with body.write() as stream:
            for i in range(0, len(body_bytes), 4096):
                stream.blocking_write_and_flush(body_bytes[i : i + 4096])
        OutgoingBody.finish(body, None)
