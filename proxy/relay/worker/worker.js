// Headway relay Worker — protocol 1.
//
// Deployed into the user's own Cloudflare account by `headway relay setup`. It rebuilds each request body from a
// full sync or a patch against the session's previous body, checks the SHA-256 the gateway announced, calls the
// provider with the headers the request carries (the user's API key or token: this Worker sees them), and streams
// the answer back unbuffered. Protocol and trust model: proxy/relay/__init__.py in the Headway sources.
//
// Modules: worker.js (this: authentication, paths, the Durable Object class), common.js (constants, errors),
// envelope.js (caps, inflate, patches), upstream.js (the allowlist, the call), handlers.js (HTTP and WebSocket),
// storage.js (KV and Durable Object storage, forgetting).
//
// Bindings: RELAY_TOKEN (secret, required); RELAY_UPSTREAMS (JSON list of the provider origins it may call; any
// other upstream is refused with 403 before any network call, and none at all when it is missing); RELAY_SESSION
// (Durable Object namespace of class RelaySession, preferred) or RELAY_STATE (KV namespace); RELAY_TTL_SECONDS
// (optional, default 86400).

import { DurableObject } from "cloudflare:workers";
import {
  MAX_BODY,
  MAX_ENVELOPE,
  MAX_SESSIONS,
  PROTOCOL,
  REGISTRY,
  RelayError,
  SESSION_RE,
  TOUCH_EVERY_MS,
  WORKER_VERSION,
  errorResponse,
  json,
  storageKind,
  ttlSeconds,
} from "./common.js";
import { route } from "./handlers.js";
import { DurableStore, KvStore, forgetKv } from "./storage.js";
import { allowedOrigins } from "./upstream.js";

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
