// Headway settings page: the request log viewer (GET /api/requests, GET /api/requests/<id>).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H) return;
  const { api, el, whenLabel, compact, money } = H;
  const $ = (id) => document.getElementById(id);
  const table = $("requests-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  const filters = { account: $("requests-account"), agent: $("requests-agent"), status: $("requests-status") };

  let rows = [];
  let nextBefore = null;
  let pagedIn = false; // older pages shown: do not replace them on every new request
  let busy = false;
  let openId = null;
  let lastSeen = undefined;

  function ms(value) {
    if (value === null || value === undefined) return "–";
    return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : `${Math.round(value)} ms`;
  }

  function query(before) {
    const params = new URLSearchParams();
    for (const [name, select] of Object.entries(filters)) if (select.value) params.set(name, select.value);
    if (before) params.set("before", String(before));
    return params.toString();
  }

  function syncOptions(select, items, allText) {
    const chosen = select.value;
    const options = [el("option", { value: "", text: allText })];
    for (const [value, label] of items) options.push(el("option", { value, text: label }));
    if (chosen && !items.some(([value]) => value === chosen)) options.push(el("option", { value: chosen, text: chosen }));
    select.replaceChildren(...options);
    select.value = chosen;
  }

  function shortSession(id) {
    if (!id) return "–";
    return id.length > 14 ? `${id.slice(0, 13)}…` : id;
  }

  function hopsText(hops) {
    return hops.map((h) => `${h.account} ${h.status}`).join(", ");
  }

  function statusPill(r) {
    const pill = el("span", { class: `pill ${r.ok ? "pill-ok" : "pill-bad"}`, text: String(r.status) });
    if (r.error) pill.title = r.error;
    return pill;
  }

  function row(r) {
    const pick = el("button", { type: "button", class: "session-pick request-pick", text: whenLabel(r.ts) });
    pick.setAttribute("aria-label", `Details of the request at ${whenLabel(r.ts)}${r.agent ? ` from ${r.agent}` : ""}`);
    pick.addEventListener("click", () => openDetail(r.id));
    const tokens = r.tokens || {};
    // The hops that did not serve it (the Account column has the one that did); each one's reason on hover.
    const failed = r.fallbacks.filter((h) => !h.ok);
    const fallbacks = failed.length
      ? el("span", { class: "fallback-chip", text: hopsText(failed), title: r.fallbacks.map((h) => `${h.account} ${h.status}: ${h.why}`).join("\n") })
      : el("span", { class: "muted", text: "–" });
    return el(
      "tr",
      { "data-id": String(r.id), "data-ok": String(r.ok), "aria-selected": String(r.id === openId) },
      el("td", {}, pick),
      el("td", { text: r.agent || "–", title: r.user_agent || "no User-Agent" }),
      el("td", { class: "hide-narrow hide-medium mono", text: shortSession(r.session_id), title: r.session_id || "" }),
      el("td", { class: "hide-narrow", text: r.model || "–" }),
      el("td", { text: r.account || "–" }),
      el("td", { class: "num" }, statusPill(r)),
      el("td", { class: "num", text: ms(r.latency_ms) }),
      el("td", { class: "num hide-narrow", text: ms(r.ttfb_ms) }),
      el("td", { class: "num hide-narrow", text: r.tokens ? `${compact(tokens.input + tokens.cache_write)} · ${compact(tokens.output)} · ${compact(tokens.cache_read)}` : "–" }),
      el("td", { class: "num hide-narrow", text: money(r.cost_usd) }),
      el("td", { class: "hide-narrow" }, fallbacks),
    );
  }

  function renderRows() {
    const items = rows.map(row);
    if (!items.length) {
      const filtered = Object.values(filters).some((s) => s.value);
      items.push(el("tr", {}, el("td", { colspan: "11", class: "muted", text: filtered ? "No request matches these filters." : "No requests in the last 7 days yet." })));
    }
    body.replaceChildren(...items);
    $("requests-more").hidden = nextBefore === null;
    $("requests-count").textContent = rows.length ? `${rows.length} request${rows.length === 1 ? "" : "s"} shown${nextBefore === null ? "" : "; there are older ones"}.` : "";
  }

  // One load at a time. A load asked for while one is in flight (a filter changed, a new request arrived, More) runs
  // when it ends, a fresh first page winning over More; an answer to filters the user has since changed is dropped,
  // not shown under the new ones.
  let queued = null; // null: nothing waits; false: the first page; true: the next older page
  let loadingMore = false;

  async function load(more, why) {
    if (busy) {
      // A new request while older pages load: they stay (as when they are shown); a filter change always reloads.
      if (why === "new-request" && loadingMore) return;
      queued = queued === null ? Boolean(more) : queued && Boolean(more);
      return;
    }
    busy = true;
    loadingMore = Boolean(more);
    const asked = query(null);
    try {
      const data = await api("GET", `/api/requests?${query(more ? nextBefore : null)}`);
      if (query(null) !== asked) {
        queued = false;
        return;
      }
      rows = more ? rows.concat(data.requests) : data.requests;
      pagedIn = Boolean(more);
      nextBefore = data.next_before;
      syncOptions(filters.account, data.choices.accounts.map((a) => [a.id, a.label]), "All accounts");
      syncOptions(filters.agent, data.choices.agents.map((a) => [a, a]), "All agents");
      $("requests-dumps-note").hidden = data.dumps_enabled;
      renderRows();
    } catch (error) {
      if (error.status !== 401) body.replaceChildren(el("tr", {}, el("td", { colspan: "11", class: "muted", text: `The request log is unavailable: ${error.message}` })));
    } finally {
      busy = false;
      if (queued !== null) {
        const more = queued;
        queued = null;
        load(more);
      }
    }
  }

  function fact(name, ...value) {
    return [el("dt", { text: name }), el("dd", {}, ...value)];
  }

  function dumpPart(title, part) {
    if (!part) return null;
    const pre = el("pre", { class: "snippet dump-text", tabindex: "0", "aria-label": title, text: part.text });
    const note = part.truncated ? el("p", { class: "muted small", text: `Only the first part is shown; the whole is in ${part.name}.` }) : null;
    return el("details", { class: "dump-part" }, el("summary", { text: `${title} (${part.name})` }), pre, note);
  }

  function renderDetail(r) {
    $("request-detail").hidden = false;
    $("request-detail-title").textContent = `Request at ${whenLabel(r.ts)}`;
    $("request-detail-meta").textContent = [r.agent, r.model, r.account].filter(Boolean).join(" · ");
    const t = r.tokens;
    const facts = [
      ...fact("Agent", el("span", { text: r.agent || "unknown" }), r.user_agent ? el("code", { text: r.user_agent }) : null),
      ...fact("Session", el("code", { text: r.session_id || "none" })),
      ...fact("Route", el("code", { text: r.route }), el("span", { class: "muted", text: r.stream ? "streamed" : "not streamed" })),
      ...fact("Account", el("span", { text: r.account || "none" })),
      ...fact("Status", statusPill(r), r.error ? el("span", { class: "form-error", text: r.error }) : null),
      ...fact("Timing", el("span", { text: `${ms(r.latency_ms)} in total, first token after ${ms(r.ttfb_ms)}` })),
      ...fact(
        "Tokens",
        el("span", {
          text: t ? `${t.input.toLocaleString()} in, ${t.output.toLocaleString()} out, ${t.cache_read.toLocaleString()} read from the cache, ${t.cache_write.toLocaleString()} written to it${t.reasoning ? `, ${t.reasoning.toLocaleString()} reasoning` : ""}` : "not reported",
        }),
      ),
      ...fact("Est. cost", el("span", { text: money(r.cost_usd) })),
    ];
    if (r.fallbacks.length) {
      facts.push(...fact("Fallbacks", el("ol", { class: "hops" }, ...r.fallbacks.map((h) => el("li", { "data-ok": String(h.ok) }, el("strong", { text: `${h.account} ${h.status}` }), ` — ${h.why}`)))));
    }
    if (r.purpose !== "agent") facts.push(...fact("Sent by", el("span", { text: r.purpose === "test" ? "the Test button" : r.purpose })));
    if (r.upstream_request_id) facts.push(...fact("Provider's id", el("code", { text: r.upstream_request_id })));
    $("request-detail-facts").replaceChildren(...facts);
    const dump = $("request-detail-dump");
    if (r.dump) {
      dump.replaceChildren(
        el("h4", { text: "Dump" }),
        el("p", { class: "muted small", text: `Written ${r.dump.meta.time || ""}: the exact body sent upstream${r.dump.sse ? " and the answer's event stream" : ""}.` }),
        dumpPart("Request body", r.dump.request),
        dumpPart("Answer (events)", r.dump.sse),
      );
    } else {
      dump.replaceChildren(
        el("p", {
          class: "muted small",
          text: r.dumps_enabled ? "No dump for this request (written before dumps were on, or pruned to stay under the size limit)." : "No dump: request dumps were off. Turn them on under Debugging to keep the exact body of each request.",
        }),
      );
    }
  }

  async function openDetail(id) {
    openId = id;
    for (const tr of body.querySelectorAll("tr[data-id]")) tr.setAttribute("aria-selected", String(Number(tr.dataset.id) === id));
    try {
      const r = await api("GET", `/api/requests/${encodeURIComponent(id)}`);
      if (openId !== id) return;
      renderDetail(r);
      $("request-detail").focus({ preventScroll: true });
      $("request-detail").scrollIntoView({ block: "nearest" });
    } catch (error) {
      H.toast(error.message, "error");
    }
  }

  $("request-detail-close").addEventListener("click", () => {
    openId = null;
    $("request-detail").hidden = true;
    for (const tr of body.querySelectorAll("tr[aria-selected=true]")) tr.setAttribute("aria-selected", "false");
  });
  $("requests-more").addEventListener("click", () => load(true));
  for (const select of Object.values(filters)) select.addEventListener("change", () => load(false));

  H.onState((next) => {
    const latest = next.recent.latest_request;
    if (latest !== lastSeen && !pagedIn) load(false, "new-request");
    lastSeen = latest;
  });
})();
