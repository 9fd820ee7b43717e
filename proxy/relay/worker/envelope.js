// Envelopes: read with a cap, inflated with a cap (no gzip bomb), decoded; patches applied; bodies rebuilt and
// checked against their announced SHA-256.

import { INFLATE_SLICE, LANE_RE, MAX_BODY, MAX_ENVELOPE, PROTOCOL, RelayError, sha256Tag } from "./common.js";

// Read a stream into one array, refusing (413 `code`) as soon as it grows past `limit`: nothing past the cap is held.
async function readCapped(stream, limit, code, what) {
  const reader = stream.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new RelayError(413, code, `${what} is over ${limit} bytes`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// Inflate with a cap: a gzip bomb stops a little past MAX_BODY bytes instead of filling the Worker's memory. The
// runtime's inflater does not wait for its reader (each write is inflated whole, at once, into its queue), so the
// input goes in small slices and the queue is drained after each one, before the next slice is written.
async function gunzip(bytes) {
  const inflate = new DecompressionStream("gzip");
  const writer = inflate.writable.getWriter();
  const reader = inflate.readable.getReader();
  const parts = [];
  let size = 0;
  let pending = null; // a read the inflater has not answered yet: kept for the next round, never dropped
  const take = (next) => {
    pending = null;
    if (next.done) return false;
    size += next.value.length;
    if (size > MAX_BODY) throw new RelayError(413, "body_too_large", `the inflated envelope is over ${MAX_BODY} bytes`);
    parts.push(next.value);
    return true;
  };
  try {
    for (let i = 0; i < bytes.length; i += INFLATE_SLICE) {
      await writer.write(bytes.subarray(i, i + INFLATE_SLICE));
      for (;;) {
        pending ??= reader.read();
        const next = await Promise.race([pending, nextTurn()]);
        if (next === IDLE || !take(next)) break;
      }
    }
    const closing = writer.close();
    while (take(await (pending ?? reader.read())));
    await closing;
  } catch (err) {
    reader.cancel().catch(() => {});
    writer.abort().catch(() => {});
    throw err;
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const IDLE = Symbol("idle");

// Resolves after every reaction already queued (a queued chunk's read resolves before this does).
function nextTurn() {
  return new Promise((resolve) => setTimeout(() => resolve(IDLE), 0));
}

async function readEnvelope(request) {
  const declared = Number(request.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > MAX_ENVELOPE) {
    throw new RelayError(413, "envelope_too_large", `the envelope is over ${MAX_ENVELOPE} bytes`);
  }
  if (!request.body) return new Uint8Array(0);
  return readCapped(request.body, MAX_ENVELOPE, "envelope_too_large", "the envelope");
}

async function decodeEnvelope(bytes) {
  if (bytes.length < 2) throw new RelayError(400, "bad_envelope", "empty envelope");
  if (bytes.length > MAX_ENVELOPE) {
    throw new RelayError(413, "envelope_too_large", `the envelope is over ${MAX_ENVELOPE} bytes`);
  }
  let raw;
  if (bytes[0] === 0) raw = bytes.subarray(1);
  else if (bytes[0] === 1) {
    try {
      raw = await gunzip(bytes.subarray(1));
    } catch (err) {
      if (err instanceof RelayError) throw err;
      throw new RelayError(400, "bad_envelope", `cannot gunzip the envelope: ${err}`);
    }
  } else throw new RelayError(400, "bad_envelope", `unknown envelope encoding ${bytes[0]}`);
  const nl = raw.indexOf(10);
  if (nl < 0) throw new RelayError(400, "bad_envelope", "the envelope has no header line");
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(raw.subarray(0, nl)));
  } catch (err) {
    throw new RelayError(400, "bad_envelope", "the envelope header is not JSON");
  }
  if (header === null || typeof header !== "object") throw new RelayError(400, "bad_envelope", "bad header");
  if (header.v !== PROTOCOL) {
    throw new RelayError(426, "protocol_mismatch", `this Worker speaks relay protocol ${PROTOCOL}, not ${header.v}`);
  }
  return { header, payload: raw.subarray(nl + 1) };
}

function applyOps(base, ops, payload) {
  if (!Array.isArray(ops)) throw new RelayError(400, "bad_patch", "ops must be an array");
  let size = base.length;
  let inserted = 0;
  let pos = 0;
  for (const op of ops) {
    if (!Array.isArray(op) || op.length !== 3 || !op.every((n) => Number.isInteger(n) && n >= 0)) {
      throw new RelayError(400, "bad_patch", "each op is [start, deleteCount, insertLength]");
    }
    const [start, del, len] = op;
    if (start < pos || start + del > base.length) throw new RelayError(409, "bad_patch", "the patch does not fit the base body");
    size += len - del;
    inserted += len;
    pos = start + del;
  }
  if (inserted !== payload.length) throw new RelayError(400, "bad_patch", "the inserts do not match the ops");
  if (size > MAX_BODY) throw new RelayError(413, "body_too_large", `the rebuilt body is over ${MAX_BODY} bytes`);
  const out = new Uint8Array(size);
  let o = 0;
  let p = 0;
  pos = 0;
  for (const [start, del, len] of ops) {
    out.set(base.subarray(pos, start), o);
    o += start - pos;
    out.set(payload.subarray(p, p + len), o);
    o += len;
    p += len;
    pos = start + del;
  }
  out.set(base.subarray(pos), o);
  return out;
}

// Rebuild the full body, check its hash, remember it as the lane's new base. RelayError 409 on any mismatch.
async function rebuild(store, header, payload) {
  const lane = header.lane;
  if (typeof lane !== "string" || !LANE_RE.test(lane)) throw new RelayError(400, "bad_request", "bad lane");
  let body;
  if (header.mode === "full_sync" || header.mode === "oneshot") {
    body = payload.slice();
  } else if (header.mode === "patch") {
    const state = await store.get(lane);
    if (!state) throw new RelayError(409, "state_mismatch", "no base body for this lane (expired or never synced)");
    if (state.hash !== header.base_hash) throw new RelayError(409, "state_mismatch", "the lane's base body differs");
    body = applyOps(state.body, header.ops, payload);
  } else {
    throw new RelayError(400, "bad_request", `unknown mode ${header.mode}`);
  }
  const hash = await sha256Tag(body);
  if (hash !== header.next_hash) throw new RelayError(409, "hash_mismatch", "the rebuilt body's SHA-256 differs");
  if (header.mode !== "oneshot") {
    await store.put(lane, { body, hash, revision: Number(header.revision) || 0 }, header.mode === "full_sync");
  }
  return body;
}

export { readEnvelope, decodeEnvelope, rebuild };
