// `pricing`: quotes a list of items from the price list in the `prices` store (JavaScript,
// componentize-js). Private: only `orders` may call it, in-process.
//
// POST /quote  {"items": [{"sku": "fudge", "qty": 2}]}
//   -> 200 {"lines": [{"sku": "fudge", "qty": 2, "unit_cents": 250, "cents": 500}], "total_cents": 500}
//   An unknown SKU answers 422, a bad item 400, each with a JSON error.

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Answer extends Error {
  constructor(status, body) {
    super(body.error);
    this.status = status;
    this.body = body;
  }
}

function readBody(request) {
  const body = request.consume();
  const stream = body.stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch {
      break; // closed: the whole body is read
    }
  }
  stream[Symbol.dispose]();
  body[Symbol.dispose]();
  return decoder.decode(concat(chunks));
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

export function priceItems(items, priceOf) {
  if (!Array.isArray(items) || items.length === 0) {
    throw new Answer(400, { error: '`items` must be a non-empty list' });
  }
  const lines = items.map((item) => {
    const { sku, qty } = item ?? {};
    if (typeof sku !== 'string' || !Number.isInteger(qty) || qty < 1 || qty > 1000) {
      throw new Answer(400, { error: 'each item is {"sku": string, "qty": 1..1000}' });
    }
    const unit = priceOf(sku);
    if (unit === undefined) {
      throw new Answer(422, { error: `unknown sku ${JSON.stringify(sku)}` });
    }
    return { sku, qty, unit_cents: unit, cents: unit * qty };
  });
  return { lines, total_cents: lines.reduce((sum, line) => sum + line.cents, 0) };
}

export const incomingHandler = {
  handle(request, responseOut) {
    let status = 200;
    let answer;
    try {
      let order;
      try {
        order = JSON.parse(readBody(request));
      } catch (e) {
        throw new Answer(400, { error: `the body is not JSON: ${e.message}` });
      }
      const prices = open('prices');
      answer = priceItems(order?.items, (sku) => {
        const value = prices.get(sku);
        return value === undefined ? undefined : Number(decoder.decode(value));
      });
    } catch (e) {
      if (!(e instanceof Answer)) throw e;
      status = e.status;
      answer = e.body;
    }
    const bytes = encoder.encode(JSON.stringify(answer));
    const response = new OutgoingResponse(
      Fields.fromList([['content-type', encoder.encode('application/json')]]),
    );
    response.setStatusCode(status);
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
    const stream = body.write();
    for (let i = 0; i < bytes.length; i += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
    }
    // The stream is a child of the body: drop it before finishing the body.
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
