// A relay request over HTTP (`/v1/relay`) or a session's WebSocket (`/v1/ws`): rebuild, check, call, stream.

import { HOP_BY_HOP, KEEPALIVE_MS, PROTOCOL, RelayError, WORKER_VERSION, WS_CHUNK } from "./common.js";
import { decodeEnvelope, readEnvelope, rebuild } from "./envelope.js";
import { callUpstream, passthrough, upstreamOf } from "./upstream.js";

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

export { route };
