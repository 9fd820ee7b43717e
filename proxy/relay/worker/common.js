// The relay Worker's protocol constants, limits, and error answers; shared by its other modules.

const PROTOCOL = 1;
const WORKER_VERSION = "1.1.0";

const MAX_LANES = 8;
const MAX_SESSIONS = 128; // sessions kept; the least recently used beyond this are deleted
const MAX_ENVELOPE = 16 * 1024 * 1024; // bytes of one envelope as uploaded (compressed)
const MAX_BODY = 32 * 1024 * 1024; // bytes of an inflated envelope, and of a rebuilt body
const INFLATE_SLICE = 8192; // compressed bytes handed to the inflater at a time: at most ~8 MiB come out of one
const REGISTRY = "registry"; // the Durable Object that lists the sessions (never a session key: those are hex)
const TOUCH_EVERY_MS = 3600 * 1000; // a session tells the registry it is alive at most this often
const FORGET_BATCH = 900; // KV lanes deleted per /v1/forget call
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

async function sha256Tag(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return "sha256:" + hex;
}

export {
  PROTOCOL,
  WORKER_VERSION,
  MAX_LANES,
  MAX_SESSIONS,
  MAX_ENVELOPE,
  MAX_BODY,
  INFLATE_SLICE,
  REGISTRY,
  TOUCH_EVERY_MS,
  FORGET_BATCH,
  STORAGE_CHUNK,
  WS_CHUNK,
  KEEPALIVE_MS,
  HOP_BY_HOP,
  SESSION_RE,
  LANE_RE,
  RelayError,
  json,
  errorResponse,
  ttlSeconds,
  storageKind,
  sha256Tag,
};
