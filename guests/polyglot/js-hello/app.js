// A wasi:http/proxy "hello" function in JavaScript (built with componentize-js).
//
// Answers a request with 200, `content-type: text/plain` and
// `hello from javascript\n`, or `hello, X, from javascript\n` when the query has `name=X`.
// A path with `/random` answers what `Math.random()` and `crypto.getRandomValues` give this
// request: the engine was initialized when the component was built (Wizer), so this shows
// whether every request shares a seed from that snapshot.
// It implements `wasi:http/incoming-handler` by hand (not StarlingMonkey's fetch event),
// so what runs is the same contract as the Python and Rust guests.
// A POST or PUT is echoed instead: the head first, then its body streamed back as it arrives,
// so a request whose body never comes holds its instance (what `meshwa-bench languages` uses
// to measure memory per live instance).

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();

/** The body for a request to `pathWithQuery` (e.g. `/greet?name=Ada`). */
export function greeting(pathWithQuery) {
  if ((pathWithQuery || '').includes('/random')) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return `random ${Math.random()} crypto ${Array.from(bytes).join('.')}\n`;
  }
  const url = new URL(pathWithQuery || '/', 'http://localhost');
  const name = url.searchParams.get('name');
  return name ? `hello, ${name}, from javascript\n` : 'hello from javascript\n';
}

/** Answers 200 at once, then streams the request body back chunk by chunk. */
function echo(request, responseOut) {
  const headers = Fields.fromList([['content-type', encoder.encode('application/octet-stream')]]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(200);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response });

  const incoming = request.consume();
  const source = incoming.stream();
  const sink = body.write();
  for (;;) {
    let chunk;
    try {
      chunk = source.blockingRead(16384n);
    } catch (e) {
      if (e?.payload?.tag === 'closed') break;
      throw e; // the host ended the body (it went over its limit): fail the request
    }
    for (let i = 0; i < chunk.length; i += 4096) {
      sink.blockingWriteAndFlush(chunk.subarray(i, i + 4096));
    }
  }
  // Children before their parents: the streams, then the bodies.
  source[Symbol.dispose]();
  incoming[Symbol.dispose]();
  sink[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    const method = request.method().tag;
    if (method === 'post' || method === 'put') {
      echo(request, responseOut);
      return;
    }
    const bytes = encoder.encode(greeting(request.pathWithQuery()));

    const headers = Fields.fromList([
      ['content-type', encoder.encode('text/plain')],
      ['content-length', encoder.encode(String(bytes.length))],
    ]);
    const response = new OutgoingResponse(headers);
    response.setStatusCode(200);
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });

    // blocking-write-and-flush takes at most 4096 bytes per call.
    const stream = body.write();
    for (let i = 0; i < bytes.length; i += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
    }
    // The stream is a child of the body: drop it before finishing the body.
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
