// Headway relay Worker — protocol 1.
//
// Deployed into the user's own Cloudflare account by `headway relay setup`. It rebuilds each request body from a
// full sync or a patch against the session's previous body, checks the SHA-256 the gateway announced, calls the
// provider with the headers the request carries (the user's API key or token: this Worker sees them), and streams
// the answer back unbuffered. Protocol and trust model: proxy/relay/__init__.py in the Headway sources.
//
// Bindings: RELAY_TOKEN (secret, required); RELAY_SESSION (Durable Object namespace of class RelaySession,
// preferred) or RELAY_STATE (KV namespace); RELAY_TTL_SECONDS (optional, default 86400).

const PROTOCOL = 1;
const WORKER_VERSION = "1.0.0";

const MAX_LANES = 8;
const DEFAULT_TTL_SECONDS = 86400;
const STORAGE_CHUNK = 512 * 1024;
const WS_CHUNK = 256 * 1024;
const KEEPALIVE_MS = 15000;
const HOP_BY_HOP = ["content-length", "transfer-encoding", "connection", "keep-alive"];
const SESSION_RE = /^[0-9a-f]{16,64}$/;
const LANE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

class RelayError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function json(data, status = 200, extra = {}) {
  return new Response(JSON.stringify(data), {
    status,
    headers: { "content-type": "application/json", ...extra },
  });
}

function errorResponse(err) {
  const e = err instanceof RelayError ? err : new RelayError(500, "internal", `relay failure: ${err}`);
  return json({ error: { code: e.code, message: e.message } }, e.status, { "x-headway-relay-error": e.code });
}

function ttlSeconds(env) {
  const n = Number(env.RELAY_TTL_SECONDS);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_TTL_SECONDS;
}

function storageKind(env) {
  return env.RELAY_SESSION ? "durable_object" : env.RELAY_STATE ? "kv" : "none";
}

async function authorized(request, env) {
  const expected = env.RELAY_TOKEN;
  if (typeof expected !== "string" || expected.length < 16) return false;
  const given = request.headers.get("x-relay-token") ?? "";
  const enc = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(given)),
    crypto.subtle.digest("SHA-256", enc.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

async function sha256Tag(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return "sha256:" + hex;
}

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function decodeEnvelope(bytes) {
  if (bytes.length < 2) throw new RelayError(400, "bad_envelope", "empty envelope");
  let raw;
  if (bytes[0] === 0) raw = bytes.subarray(1);
  else if (bytes[0] === 1) {
    try {
      raw = await gunzip(bytes.subarray(1));
    } catch (err) {
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
  if (header.mode !== "oneshot") await store.put(lane, { body, hash, revision: Number(header.revision) || 0 });
  return body;
}

async function callUpstream(header, body) {
  const up = header.upstream;
  if (!up || typeof up.url !== "string" || !/^https?:\/\//i.test(up.url)) {
    throw new RelayError(400, "bad_upstream", "the upstream URL must be http(s)");
  }
  const method = String(up.method || "POST").toUpperCase();
  const headers = new Headers();
  for (const pair of Array.isArray(up.headers) ? up.headers : []) {
    if (Array.isArray(pair) && pair.length === 2) headers.append(String(pair[0]), String(pair[1]));
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  try {
    return await fetch(up.url, { method, headers, body: hasBody ? body : null, redirect: "manual" });
  } catch (err) {
    throw new RelayError(502, "upstream_unreachable", `cannot reach the upstream: ${err}`);
  }
}

// The upstream's answer, status and headers as sent; the body streams through as it arrives.
function passthrough(upstream) {
  const headers = new Headers(upstream.headers);
  for (const name of HOP_BY_HOP) headers.delete(name);
  headers.set("x-headway-relay", String(PROTOCOL));
  return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers });
}

async function handleHttp(request, store) {
  if (request.method !== "POST") throw new RelayError(405, "method_not_allowed", "POST the envelope");
  const { header, payload } = await decodeEnvelope(new Uint8Array(await request.arrayBuffer()));
  const body = await rebuild(store, header, payload);
  return passthrough(await callUpstream(header, body));
}

// One WebSocket per agent session; requests on it are handled one at a time, in arrival order.
class SocketSession {
  constructor(ws, store) {
    this.ws = ws;
    this.store = store;
    this.queue = [];
    this.busy = false;
    this.closed = false;
    this.timer = null;
  }

  start() {
    this.ws.accept();
    this.ws.addEventListener("message", (event) => this.onMessage(event.data));
    this.ws.addEventListener("close", () => this.shutdown());
    this.ws.addEventListener("error", () => this.shutdown());
    this.timer = setInterval(() => this.send({ t: "keepalive" }), KEEPALIVE_MS);
    this.send({ t: "ready", v: PROTOCOL, worker: WORKER_VERSION });
  }

  send(message) {
    if (this.closed) return;
    try {
      this.ws.send(message instanceof Uint8Array ? message : JSON.stringify(message));
    } catch (err) {
      this.shutdown();
    }
  }

  onMessage(data) {
    if (typeof data === "string") {
      let message = null;
      try {
        message = JSON.parse(data);
      } catch (err) {
        return;
      }
      if (message && message.t === "close") {
        this.shutdown();
        try {
          this.ws.close(1000, "bye");
        } catch (err) {}
      }
      return; // keepalives need no answer: the server sends its own every 15 s
    }
    this.queue.push(new Uint8Array(data));
    this.pump();
  }

  async pump() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length && !this.closed) await this.handle(this.queue.shift());
    } finally {
      this.busy = false;
    }
  }

  async handle(bytes) {
    let id = null;
    let started = false;
    try {
      const { header, payload } = await decodeEnvelope(bytes);
      id = header.id ?? null;
      const body = await rebuild(this.store, header, payload);
      this.send({ t: "accepted", id });
      const upstream = await callUpstream(header, body);
      const headers = [];
      for (const [name, value] of upstream.headers) {
        // The body below is already decoded by the runtime, so its encoding header must not travel with it.
        if (!HOP_BY_HOP.includes(name) && name !== "content-encoding") headers.push([name, value]);
      }
      this.send({ t: "response_start", id, status: upstream.status, headers });
      started = true;
      if (upstream.body) {
        const reader = upstream.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (this.closed) {
            await reader.cancel();
            return;
          }
          for (let i = 0; i < value.length; i += WS_CHUNK) this.send(value.subarray(i, i + WS_CHUNK));
        }
      }
      this.send({ t: "done", id });
    } catch (err) {
      const e = err instanceof RelayError
        ? err
        : new RelayError(started ? 502 : 500, started ? "upstream_broke" : "internal", `relay failure: ${err}`);
      this.send({ t: "error", id, status: e.status, code: e.code, message: e.message, started });
    }
  }

  shutdown() {
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

function handleSocket(request, store) {
  if ((request.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
    throw new RelayError(426, "websocket_expected", "this path speaks WebSocket");
  }
  const [client, server] = Object.values(new WebSocketPair());
  new SocketSession(server, store).start();
  return new Response(null, { status: 101, webSocket: client });
}

function route(pathname, request, store) {
  if (pathname === "/v1/relay") return handleHttp(request, store);
  if (pathname === "/v1/ws") return handleSocket(request, store);
  throw new RelayError(404, "not_found", "no such relay path");
}

// Per-session state in KV: one key per lane, expiring after the TTL. Eventually consistent across locations and
// limited to one write per second per key: the Durable Object below is the better home.
class KvStore {
  constructor(kv, session, ttl) {
    this.kv = kv;
    this.session = session;
    this.ttl = Math.max(60, Math.floor(ttl));
  }

  key(lane) {
    return `session:${this.session}:${lane}`;
  }

  async get(lane) {
    const { value, metadata } = await this.kv.getWithMetadata(this.key(lane), { type: "arrayBuffer" });
    if (!value || !metadata || typeof metadata.hash !== "string") return null;
    return { body: new Uint8Array(value), hash: metadata.hash, revision: metadata.revision };
  }

  async put(lane, state) {
    await this.kv.put(this.key(lane), state.body, {
      expirationTtl: this.ttl,
      metadata: { hash: state.hash, revision: state.revision },
    });
  }
}

// Per-session state in the session's own Durable Object: strongly consistent, kept in memory while the session is
// active, persisted in chunks so that an evicted object picks up where it left off; an alarm forgets it after the TTL.
class DurableStore {
  constructor(storage, ttlSeconds) {
    this.storage = storage;
    this.ttlMs = ttlSeconds * 1000;
    this.lanes = new Map();
    this.index = null; // lane -> {chunks, used}
  }

  async loadIndex() {
    if (this.index === null) this.index = (await this.storage.get("index")) ?? {};
    return this.index;
  }

  async get(lane) {
    let state = this.lanes.get(lane);
    if (!state) {
      const index = await this.loadIndex();
      const entry = index[lane];
      if (!entry) return null;
      const meta = await this.storage.get(`lane:${lane}`);
      if (!meta) return null;
      const keys = [];
      for (let i = 0; i < meta.chunks; i++) keys.push(`lane:${lane}:${i}`);
      const parts = [];
      for (let i = 0; i < keys.length; i += 128) {
        const got = await this.storage.get(keys.slice(i, i + 128));
        for (const key of keys.slice(i, i + 128)) parts.push(got.get(key));
      }
      if (parts.some((part) => !part)) return null;
      const body = new Uint8Array(meta.length);
      let offset = 0;
      for (const part of parts) {
        const bytes = new Uint8Array(part);
        body.set(bytes, offset);
        offset += bytes.length;
      }
      state = { body, hash: meta.hash, revision: meta.revision };
      this.lanes.set(lane, state);
    }
    return state;
  }

  async put(lane, state) {
    const index = await this.loadIndex();
    const now = Date.now();
    const options = { allowUnconfirmed: true };
    const previous = index[lane]?.chunks ?? 0;
    const chunks = Math.ceil(state.body.length / STORAGE_CHUNK);
    this.lanes.set(lane, state);
    for (let i = 0; i < chunks; i++) {
      this.storage.put(`lane:${lane}:${i}`, state.body.slice(i * STORAGE_CHUNK, (i + 1) * STORAGE_CHUNK), options);
    }
    for (let i = chunks; i < previous; i++) this.storage.delete(`lane:${lane}:${i}`, options);
    this.storage.put(
      `lane:${lane}`,
      { hash: state.hash, revision: state.revision, chunks, length: state.body.length },
      options,
    );
    index[lane] = { chunks, used: now };
    const lanes = Object.keys(index);
    if (lanes.length > MAX_LANES) {
      const oldest = lanes.filter((l) => l !== lane).sort((a, b) => index[a].used - index[b].used)[0];
      for (let i = 0; i < index[oldest].chunks; i++) this.storage.delete(`lane:${oldest}:${i}`, options);
      this.storage.delete(`lane:${oldest}`, options);
      this.lanes.delete(oldest);
      delete index[oldest];
    }
    this.storage.put("index", index, options);
    await this.storage.setAlarm(now + this.ttlMs);
  }

  async expire() {
    const index = await this.loadIndex();
    const last = Math.max(0, ...Object.values(index).map((entry) => entry.used));
    if (Date.now() - last >= this.ttlMs) {
      await this.storage.deleteAll();
      this.lanes.clear();
      this.index = {};
    } else {
      await this.storage.setAlarm(last + this.ttlMs);
    }
  }
}

export class RelaySession {
  constructor(ctx, env) {
    this.store = new DurableStore(ctx.storage, ttlSeconds(env));
  }

  async fetch(request) {
    try {
      return await route(new URL(request.url).pathname, request, this.store);
    } catch (err) {
      return errorResponse(err);
    }
  }

  async alarm() {
    await this.store.expire();
  }
}

export default {
  async fetch(request, env) {
    try {
      const url = new URL(request.url);
      if (!["/v1/relay", "/v1/ws", "/v1/info"].includes(url.pathname)) {
        throw new RelayError(404, "not_found", "no such relay path");
      }
      if (!(await authorized(request, env))) throw new RelayError(401, "unauthorized", "missing or wrong relay token");
      const protocol = request.headers.get("x-relay-protocol");
      if (protocol !== null && protocol !== String(PROTOCOL)) {
        throw new RelayError(426, "protocol_mismatch", `this Worker speaks relay protocol ${PROTOCOL}, not ${protocol}`);
      }
      if (url.pathname === "/v1/info") {
        return json({ protocol: PROTOCOL, worker_version: WORKER_VERSION, storage: storageKind(env) });
      }
      const session = request.headers.get("x-relay-session") ?? url.searchParams.get("session") ?? "";
      if (!SESSION_RE.test(session)) throw new RelayError(400, "bad_session", "missing or malformed session key");
      if (env.RELAY_SESSION) {
        const stub = env.RELAY_SESSION.get(env.RELAY_SESSION.idFromName(session));
        return await stub.fetch(request);
      }
      if (env.RELAY_STATE) return await route(url.pathname, request, new KvStore(env.RELAY_STATE, session, ttlSeconds(env)));
      throw new RelayError(500, "no_storage", "the Worker has neither RELAY_SESSION nor RELAY_STATE bound");
    } catch (err) {
      return errorResponse(err);
    }
  },
};
