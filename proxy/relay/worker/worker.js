// Headway relay Worker — protocol 1.
//
// Deployed into the user's own Cloudflare account by `headway relay setup`. It rebuilds each request body from a
// full sync or a patch against the session's previous body, checks the SHA-256 the gateway announced, calls the
// provider with the headers the request carries (the user's API key or token: this Worker sees them), and streams
// the answer back unbuffered. Protocol and trust model: proxy/relay/__init__.py in the Headway sources.
//
// Bindings: RELAY_TOKEN (secret, required); RELAY_UPSTREAMS (JSON list of the provider origins it may call; any
// other upstream is refused with 403 before any network call, and none at all when it is missing); RELAY_SESSION
// (Durable Object namespace of class RelaySession, preferred) or RELAY_STATE (KV namespace); RELAY_TTL_SECONDS
// (optional, default 86400).

import { DurableObject } from "cloudflare:workers";

const PROTOCOL = 1;
const WORKER_VERSION = "1.1.0";

const MAX_LANES = 8;
const MAX_SESSIONS = 128; // sessions kept; the least recently used beyond this are deleted
const MAX_ENVELOPE = 16 * 1024 * 1024; // bytes of one envelope as uploaded (compressed)
const MAX_BODY = 32 * 1024 * 1024; // bytes of an inflated envelope, and of a rebuilt body
const INFLATE_SLICE = 8192; // compressed bytes handed to the inflater at a time: at most ~8 MiB come out of one
const REGISTRY = "registry"; // the Durable Object that lists the sessions (never a session key: those are hex)
const TOUCH_EVERY_MS = 3600 * 1000;
const FORGET_BATCH = 900; // KV lanes deleted per /v1/forget call // a session tells the registry it is alive at most this often
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

// The origins bound at deploy (RELAY_UPSTREAMS, a JSON list), each parsed to its canonical `URL.origin`.
function allowedOrigins(env) {
  let listed = [];
  try {
    listed = JSON.parse(env.RELAY_UPSTREAMS ?? "[]");
  } catch (err) {
    listed = [];
  }
  const origins = new Set();
  for (const item of Array.isArray(listed) ? listed : []) {
    try {
      const url = new URL(String(item));
      if (url.protocol === "https:" || url.protocol === "http:") origins.add(url.origin);
    } catch (err) {}
  }
  return origins;
}

// The upstream URL, parsed, if it is one this Worker may call; RelayError otherwise, before any network call.
// Origins are compared parsed, never as string prefixes: `https://api.anthropic.com@evil.example/` is evil.example.
function checkedUpstream(raw, origins) {
  let url;
  try {
    url = new URL(String(raw));
  } catch (err) {
    throw new RelayError(400, "bad_upstream", "the upstream URL does not parse");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new RelayError(400, "bad_upstream", "the upstream URL must be http(s)");
  }
  if (url.username !== "" || url.password !== "") {
    throw new RelayError(403, "upstream_not_allowed", "an upstream URL with user info is refused");
  }
  if (!origins.has(url.origin)) {
    throw new RelayError(
      403,
      "upstream_not_allowed",
      `${url.origin} is not one of the upstreams this Worker was deployed for; run \`headway relay setup\``,
    );
  }
  return url;
}

function upstreamOf(header, origins) {
  const up = header.upstream;
  if (!up || typeof up.url !== "string") throw new RelayError(400, "bad_upstream", "the upstream URL is missing");
  return checkedUpstream(up.url, origins);
}

async function callUpstream(header, url, body) {
  const up = header.upstream;
  const method = String(up.method || "POST").toUpperCase();
  const headers = new Headers();
  for (const pair of Array.isArray(up.headers) ? up.headers : []) {
    if (Array.isArray(pair) && pair.length === 2) headers.append(String(pair[0]), String(pair[1]));
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  try {
    // A redirect is passed back as it is, never followed: its target may be anywhere.
    return await fetch(url.href, { method, headers, body: hasBody ? body : null, redirect: "manual" });
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

async function handleHttp(request, site) {
  if (request.method !== "POST") throw new RelayError(405, "method_not_allowed", "POST the envelope");
  const { header, payload } = await decodeEnvelope(await readEnvelope(request));
  const url = upstreamOf(header, site.origins);
  const body = await rebuild(site.store, header, payload);
  return passthrough(await callUpstream(header, url, body));
}

// One WebSocket per agent session; requests on it are handled one at a time, in arrival order.
class SocketSession {
  constructor(ws, site) {
    this.ws = ws;
    this.site = site;
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
      const url = upstreamOf(header, this.site.origins);
      const body = await rebuild(this.site.store, header, payload);
      this.send({ t: "accepted", id });
      const upstream = await callUpstream(header, url, body);
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

function handleSocket(request, site) {
  if ((request.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
    throw new RelayError(426, "websocket_expected", "this path speaks WebSocket");
  }
  const [client, server] = Object.values(new WebSocketPair());
  new SocketSession(server, site).start();
  return new Response(null, { status: 101, webSocket: client });
}

// `site`: where the session's bodies are kept (`store`) and which upstreams may be called (`origins`).
function route(pathname, request, site) {
  if (pathname === "/v1/relay") return handleHttp(request, site);
  if (pathname === "/v1/ws") return handleSocket(request, site);
  throw new RelayError(404, "not_found", "no such relay path");
}

// Per-session state in KV: one key per lane, expiring after the TTL. Eventually consistent across locations and
// limited to one write per second per key: the Durable Object below is the better home. A full sync lists the stored
// lanes and deletes the least recently used sessions beyond MAX_SESSIONS (KV's listing lags writes a little: the cap
// is approximate there).
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

  async put(lane, state, fullSync) {
    await this.kv.put(this.key(lane), state.body, {
      expirationTtl: this.ttl,
      metadata: { hash: state.hash, revision: state.revision, used: Date.now() },
    });
    if (fullSync) await this.trim();
  }

  async trim() {
    const sessions = new Map(); // session -> {used, keys}
    for await (const key of kvKeys(this.kv)) {
      const session = key.name.split(":")[1];
      const entry = sessions.get(session) ?? { used: 0, keys: [] };
      entry.used = Math.max(entry.used, Number(key.metadata?.used) || 0);
      entry.keys.push(key.name);
      sessions.set(session, entry);
    }
    if (sessions.size <= MAX_SESSIONS) return;
    const oldest = [...sessions.entries()]
      .filter(([session]) => session !== this.session)
      .sort((a, b) => a[1].used - b[1].used)
      .slice(0, sessions.size - MAX_SESSIONS);
    for (const [, entry] of oldest) for (const name of entry.keys) await this.kv.delete(name);
  }
}

async function* kvKeys(kv) {
  let cursor;
  for (;;) {
    const page = await kv.list({ prefix: "session:", cursor });
    yield* page.keys;
    if (page.list_complete) return;
    cursor = page.cursor;
  }
}

// Delete the stored lanes, at most FORGET_BATCH per call (a Worker invocation may make 1000 KV operations):
// `complete` false means call again.
async function forgetKv(kv) {
  let forgotten = 0;
  for await (const key of kvKeys(kv)) {
    if (forgotten >= FORGET_BATCH) return { forgotten, complete: false };
    await kv.delete(key.name);
    forgotten += 1;
  }
  return { forgotten, complete: true };
}

// Per-session state in the session's own Durable Object: strongly consistent, kept in memory while the session is
// active, persisted in chunks so that an evicted object picks up where it left off; an alarm forgets it after the TTL.
// The session tells the registry (one more Durable Object) that it exists, so that the registry can delete the least
// recently used sessions beyond MAX_SESSIONS and every session on `POST /v1/forget`.
class DurableStore {
  constructor(storage, ttlSeconds, registry) {
    this.storage = storage;
    this.ttlMs = ttlSeconds * 1000;
    this.registry = registry;
    this.session = null; // its key, from the request
    this.lanes = new Map();
    this.index = null; // lane -> {chunks, used}
    this.touched = 0;
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
    // Registered before anything is stored: what the registry does not list, `forget` could not reach.
    if (this.session !== null && now - this.touched > TOUCH_EVERY_MS) {
      await this.registry().touch(this.session, now);
      this.touched = now;
    }
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
    if (this.session !== null) this.storage.put("session", this.session, options);
    await this.storage.setAlarm(now + this.ttlMs);
  }

  async wipe() {
    await this.storage.deleteAlarm();
    await this.storage.deleteAll();
    this.lanes.clear();
    this.index = {};
    this.touched = 0;
  }

  async expire() {
    const index = await this.loadIndex();
    const last = Math.max(0, ...Object.values(index).map((entry) => entry.used));
    if (Date.now() - last >= this.ttlMs) {
      const session = await this.storage.get("session");
      await this.wipe();
      if (typeof session === "string") await this.registry().drop(session);
    } else {
      await this.storage.setAlarm(last + this.ttlMs);
    }
  }
}

function registryOf(env) {
  return env.RELAY_SESSION.get(env.RELAY_SESSION.idFromName(REGISTRY));
}

// One class, two roles: a session's object (named after its key) and the registry (named REGISTRY), which keeps
// `sessions` = {session key: last touched} and deletes sessions through their objects. Internal calls are RPC; only
// the default handler below, after checking the token, reaches any of these objects.
export class RelaySession extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.store = new DurableStore(ctx.storage, ttlSeconds(env), () => registryOf(env));
  }

  async fetch(request) {
    try {
      const url = new URL(request.url);
      this.store.session = request.headers.get("x-relay-session") ?? url.searchParams.get("session");
      return await route(url.pathname, request, { store: this.store, origins: allowedOrigins(this.env) });
    } catch (err) {
      return errorResponse(err);
    }
  }

  async alarm() {
    await this.store.expire();
  }

  // Session role: delete everything this session keeps.
  async wipe() {
    await this.store.wipe();
  }

  // Registry role.
  async touch(session, now) {
    const sessions = (await this.ctx.storage.get("sessions")) ?? {};
    sessions[session] = now;
    const stale = now - ttlSeconds(this.env) * 1000 - TOUCH_EVERY_MS;
    for (const [key, used] of Object.entries(sessions)) if (used < stale) delete sessions[key];
    const evict = Object.keys(sessions)
      .filter((key) => key !== session)
      .sort((a, b) => sessions[a] - sessions[b])
      .slice(0, Math.max(0, Object.keys(sessions).length - MAX_SESSIONS));
    for (const key of evict) delete sessions[key];
    await this.ctx.storage.put("sessions", sessions);
    for (const key of evict) await this.sessionObject(key).wipe();
  }

  async drop(session) {
    const sessions = (await this.ctx.storage.get("sessions")) ?? {};
    if (session in sessions) {
      delete sessions[session];
      await this.ctx.storage.put("sessions", sessions);
    }
  }

  async forgetAll() {
    const sessions = (await this.ctx.storage.get("sessions")) ?? {};
    const keys = Object.keys(sessions);
    for (const key of keys) await this.sessionObject(key).wipe();
    await this.ctx.storage.deleteAll();
    return keys.length;
  }

  async count() {
    return Object.keys((await this.ctx.storage.get("sessions")) ?? {}).length;
  }

  sessionObject(key) {
    return this.env.RELAY_SESSION.get(this.env.RELAY_SESSION.idFromName(key));
  }
}

async function info(env) {
  const data = {
    protocol: PROTOCOL,
    worker_version: WORKER_VERSION,
    storage: storageKind(env),
    upstreams: [...allowedOrigins(env)].sort(),
    ttl_seconds: ttlSeconds(env),
    max_sessions: MAX_SESSIONS,
    max_envelope_bytes: MAX_ENVELOPE,
    max_body_bytes: MAX_BODY,
  };
  if (env.RELAY_SESSION) data.sessions = await registryOf(env).count();
  return json(data);
}

// Delete every stored session: `{"forgotten": <lanes (KV) or sessions (Durable Object) deleted>, "complete"}`.
async function forget(request, env) {
  if (request.method !== "POST") throw new RelayError(405, "method_not_allowed", "POST to forget");
  if (env.RELAY_SESSION) {
    return json({ forgotten: await registryOf(env).forgetAll(), complete: true, storage: "durable_object" });
  }
  if (env.RELAY_STATE) return json({ ...(await forgetKv(env.RELAY_STATE)), storage: "kv" });
  return json({ forgotten: 0, complete: true, storage: "none" });
}

const PATHS = ["/v1/relay", "/v1/ws", "/v1/info", "/v1/forget"];

export default {
  async fetch(request, env) {
    try {
      const url = new URL(request.url);
      if (!PATHS.includes(url.pathname)) throw new RelayError(404, "not_found", "no such relay path");
      if (!(await authorized(request, env))) throw new RelayError(401, "unauthorized", "missing or wrong relay token");
      const protocol = request.headers.get("x-relay-protocol");
      if (protocol !== null && protocol !== String(PROTOCOL)) {
        throw new RelayError(426, "protocol_mismatch", `this Worker speaks relay protocol ${PROTOCOL}, not ${protocol}`);
      }
      if (url.pathname === "/v1/info") return await info(env);
      if (url.pathname === "/v1/forget") return await forget(request, env);
      const session = request.headers.get("x-relay-session") ?? url.searchParams.get("session") ?? "";
      if (!SESSION_RE.test(session)) throw new RelayError(400, "bad_session", "missing or malformed session key");
      if (env.RELAY_SESSION) {
        const stub = env.RELAY_SESSION.get(env.RELAY_SESSION.idFromName(session));
        return await stub.fetch(request);
      }
      if (env.RELAY_STATE) {
        const store = new KvStore(env.RELAY_STATE, session, ttlSeconds(env));
        return await route(url.pathname, request, { store, origins: allowedOrigins(env) });
      }
      throw new RelayError(500, "no_storage", "the Worker has neither RELAY_SESSION nor RELAY_STATE bound");
    } catch (err) {
      return errorResponse(err);
    }
  },
};
