// Where sessions' base bodies live: KV (KvStore) or the session's Durable Object (DurableStore), with the caps and
// the forgetting.

import { FORGET_BATCH, MAX_LANES, MAX_SESSIONS, STORAGE_CHUNK, TOUCH_EVERY_MS } from "./common.js";

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

export { KvStore, forgetKv, DurableStore };
