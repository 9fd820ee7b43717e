// Headway settings page: the Cache analysis section (sessions, one session's turns and chart).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("analysis-sessions")) return;
  const { api, el, toast, whenLabel, duration, compact, money } = H;
  const $ = (id) => document.getElementById(id);


  let analysisSession = null; // the chosen session's key ("" = requests without a session id)
  let analysisTimer = null;
  let analysisBusy = false;

  function ratio(v) {
    return v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`;
  }

  function sessionName(s) {
    if (s.title) return s.title;
    if (!s.session_id) return "(no session id)";
    return s.session_id.length > 26 ? `${s.session_id.slice(0, 25)}…` : s.session_id;
  }

  function scheduleAnalysis(immediate) {
    clearTimeout(analysisTimer);
    analysisTimer = setTimeout(loadAnalysis, immediate ? 0 : 3000);
  }

  function costCells(costs) {
    return [
      el("td", { class: "num", text: money(costs.actual) }),
      el("td", { class: "num", text: money(costs.no_cache) }),
      el("td", { class: "num hide-narrow", text: money(costs.cache_5m) }),
      el("td", { class: "num hide-narrow", text: money(costs.cache_1h) }),
    ];
  }

  async function loadAnalysis() {
    if (analysisBusy) return scheduleAnalysis();
    analysisBusy = true;
    const days = $("analysis-days").value;
    const table = $("analysis-sessions");
    try {
      const data = await api("GET", `/api/analysis/cache?days=${encodeURIComponent(days)}`);
      $("analysis-dumps-off").hidden = data.dumps_enabled || data.sessions.length === 0;
      const keys = data.sessions.map((s) => s.key);
      if (analysisSession === null || !keys.includes(analysisSession)) analysisSession = keys.length ? keys[0] : null;
      const rows = data.sessions.map((s) => {
        const pick = el("button", { type: "button", class: "session-pick", text: sessionName(s), title: s.session_id || "requests without a session id" });
        pick.setAttribute("aria-label", `Show the turns of session ${s.title || s.session_id || "without an id"}`);
        pick.addEventListener("click", () => {
          analysisSession = s.key;
          for (const row of table.querySelectorAll("tbody tr")) row.setAttribute("aria-selected", String(row.dataset.key === s.key));
          loadSession();
        });
        const t = s.totals;
        return el(
          "tr",
          { "data-key": s.key, "aria-selected": String(s.key === analysisSession) },
          el("th", { scope: "row" }, pick),
          el("td", { class: "num hide-narrow", text: String(t.turns) }),
          el("td", { class: "num hide-narrow", text: compact(t.prompt) }),
          el("td", { class: "num", text: ratio(t.hit_ratio) }),
          el("td", { class: "num", text: String(t.breaks) }),
          el("td", { class: "num hide-narrow", text: String(t.expiries) }),
          ...costCells(s.costs),
        );
      });
      if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "10", class: "muted", text: "No requests with usage in this period." })));
      table.querySelector("tbody").replaceChildren(...rows);
      const foot = table.querySelector("tfoot");
      if (data.sessions.length > 1) {
        const t = data.totals;
        foot.replaceChildren(
          el(
            "tr",
            {},
            el("th", { scope: "row", text: "All sessions" }),
            el("td", { class: "num hide-narrow", text: String(t.turns) }),
            el("td", { class: "num hide-narrow", text: compact(t.prompt) }),
            el("td", { class: "num", text: ratio(t.hit_ratio) }),
            el("td", { class: "num", text: String(t.breaks) }),
            el("td", { class: "num hide-narrow", text: String(t.expiries) }),
            ...costCells(data.costs),
          ),
        );
      } else {
        foot.replaceChildren();
      }
      $("analysis-summary").textContent = data.sessions.length
        ? `${data.sessions.length} session${data.sessions.length === 1 ? "" : "s"}, latest first. Choose one to see its turns.`
        : "Latest first. Choose one to see its turns.";
      $("analysis-assumptions").replaceChildren(...data.assumptions.map((a) => el("li", { text: a })));
      if (analysisSession === null) $("analysis-detail").hidden = true;
      else await loadSession();
    } catch (error) {
      if (error.status === 503 && error.data && error.data.retry) scheduleAnalysis();
      table.querySelector("tbody").replaceChildren(el("tr", {}, el("td", { colspan: "10", class: "muted", text: `Analysis unavailable: ${error.message}` })));
    } finally {
      analysisBusy = false;
    }
  }

  function eventLabel(event) {
    if (!event) return null;
    const names = { break: "Break", expiry: "Expired", miss: "Miss", account_switch: "Account switch" };
    let text = names[event.kind] || event.kind;
    if (event.part) text += ` at ${event.part}`;
    if (event.offset !== null && event.offset !== undefined) text += `, byte ${event.offset.toLocaleString()}`;
    return el("span", { class: `event event-${event.kind}`, text, title: event.detail || text });
  }

  async function loadSession() {
    const key = analysisSession;
    if (key === null) return;
    const days = $("analysis-days").value;
    const query = `days=${encodeURIComponent(days)}&session=${encodeURIComponent(key)}`;
    try {
      const data = await api("GET", `/api/analysis/cache/session?${query}`);
      if (key !== analysisSession) return;
      const s = data.session;
      $("analysis-detail").hidden = false;
      $("analysis-detail-title").textContent = s.title ? `Session “${s.title}”` : s.session_id ? `Session ${s.session_id}` : "Requests without a session id";
      const t = s.totals;
      $("analysis-detail-meta").textContent = `${t.turns} turn${t.turns === 1 ? "" : "s"} · ${compact(t.prompt)} prompt tokens · ${ratio(t.hit_ratio)} read from the cache · ${t.breaks} break${t.breaks === 1 ? "" : "s"}, ${t.expiries} expir${t.expiries === 1 ? "y" : "ies"}`;
      for (const node of $("analysis-costs").querySelectorAll("[data-cost]")) node.textContent = money(s.costs[node.dataset.cost]);
      const chart = $("analysis-chart");
      chart.alt = `Chart: prompt tokens per turn of this session, read from the cache, written to it and uncached; ${ratio(t.hit_ratio)} read from the cache overall. The table below has the same numbers.`;
      const theme = darkMode.matches ? "dark" : "light";
      chart.src = `/api/analysis/cache.svg?${query}&theme=${theme}&at=${encodeURIComponent(data.generated_at)}`;
      chart.hidden = false;
      $("analysis-notes").replaceChildren(...(s.notes || []).map((n) => el("li", { text: n })));
      $("analysis-turns").querySelector("tbody").replaceChildren(
        ...s.turns.map((turn) =>
          el(
            "tr",
            {},
            el("td", { class: "num", text: String(turn.index) }),
            el("td", { class: "hide-narrow", text: whenLabel(turn.start) }),
            el("td", { class: "hide-narrow", text: turn.model || "?" }),
            el("td", { class: "num hide-narrow", text: turn.gap_s === null ? "–" : duration(turn.gap_s) }),
            el("td", { class: "num", text: compact(turn.prompt) }),
            el("td", { class: "num", text: compact(turn.cache_read) }),
            el("td", { class: "num", text: compact(turn.cache_write) }),
            el("td", { class: "num hide-narrow", text: compact(turn.uncached) }),
            el("td", { class: "num", text: ratio(turn.hit_ratio) }),
            el("td", {}, eventLabel(turn.event) || el("span", { class: "muted", text: turn.idle ? `idle > ${turn.idle}` : "–" })),
            el("td", { class: "num", text: money(turn.costs.actual) }),
          ),
        ),
      );
    } catch (error) {
      if (error.status === 404) {
        analysisSession = null;
        $("analysis-detail").hidden = true;
      } else {
        toast(error.message, "error");
      }
    }
  }

  const darkMode = window.matchMedia("(prefers-color-scheme: dark)");
  darkMode.addEventListener("change", () => { if (analysisSession !== null) loadSession(); });
  $("analysis-days").addEventListener("change", () => scheduleAnalysis(true));
  $("analysis-refresh").addEventListener("click", () => scheduleAnalysis(true));

  // New requests in the log: analyse again (at once on the first state, then a little later each time).
  H.onState((next, previous) => {
    if (!previous || previous.recent.latest_request !== next.recent.latest_request) scheduleAnalysis(!previous);
  });
})();
