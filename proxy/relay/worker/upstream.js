// The upstream call: only to the origins bound at deploy (RELAY_UPSTREAMS), never following a redirect, and the
// answer passed back as it streams.

import { HOP_BY_HOP, PROTOCOL, RelayError } from "./common.js";

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

export { allowedOrigins, upstreamOf, callUpstream, passthrough };
