"""A wasi:http/proxy "hello" function in Python (built with componentize-py).

Answers a request with 200, `content-type: text/plain` and
`hello from python\n`, or `hello, X, from python\n` when the query has `name=X`.
A path with `/random` answers what the interpreter's randomness gives this request
(`random`, the string hash, `os.urandom`): the interpreter was initialized when the
component was built, so this shows what of that snapshot every request shares.
A POST or PUT is echoed instead: the head first, then its body streamed back as it
arrives, so a request whose body never comes holds its instance (what
`meshwa-bench languages` uses to measure memory per live instance).
"""

import os
import random
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def greeting(path_with_query: str | None) -> str:
    """The body for a request to `path_with_query` (e.g. `/greet?name=Ada`)."""
    if "/random" in (path_with_query or ""):
        return f"random {random.random()} hash {hash('meshwa')} urandom {os.urandom(8).hex()}\n"
    query = urlsplit(path_with_query or "/").query
    names = parse_qs(query).get("name")
    if names and names[0]:
        return f"hello, {names[0]}, from python\n"
    return "hello from python\n"


def echo(request: IncomingRequest, response_out: ResponseOutparam) -> None:
    """Answers 200 at once, then streams the request body back chunk by chunk."""
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/octet-stream")]))
    response.set_status_code(200)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with request.consume() as incoming, incoming.stream() as source, body.write() as sink:
        while True:
            try:
                chunk = source.blocking_read(16 * 1024)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise  # the host ended the body (it went over its limit): fail the request
            for i in range(0, len(chunk), 4096):
                sink.blocking_write_and_flush(chunk[i : i + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        if isinstance(request.method(), (Method_Post, Method_Put)):
            echo(request, response_out)
            return
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
