// Headway settings page: the Usage chart (cost, tokens or requests per day and account).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("usage-chart")) return;
  const { api, el, compact, money } = H;
  const $ = (id) => document.getElementById(id);


  let usageMetric = "cost";
  let chartWidth = 0;
  window.addEventListener("resize", () => {
    const width = Math.round($("usage-chart").clientWidth);
    if (Math.abs(width - chartWidth) > 40) scheduleUsage();
  });
  let usageTimer = null;
  let usageBusy = false;

  function scheduleUsage(immediate) {
    clearTimeout(usageTimer);
    usageTimer = setTimeout(loadUsage, immediate ? 0 : 1500);
  }

  async function loadUsage() {
    if (usageBusy) return scheduleUsage();
    usageBusy = true;
    const days = $("usage-days").value;
    const width = Math.round($("usage-chart").clientWidth || 720);
    chartWidth = width;
    try {
      const query = `days=${encodeURIComponent(days)}&metric=${encodeURIComponent(usageMetric)}&width=${width}`;
      const data = await api("GET", `/api/usage?${query}`);
      const doc = new DOMParser().parseFromString(data.svg, "image/svg+xml");
      const svg = doc.documentElement;
      if (svg && svg.nodeName === "svg") $("usage-chart").replaceChildren(document.importNode(svg, true));
      $("usage-legend").replaceChildren(
        ...data.accounts.map((a) => el("li", {}, el("span", { class: `swatch series-${a.series}`, "aria-hidden": "true" }), a.label)),
      );
      const body = $("usage-table").querySelector("tbody");
      const rows = data.accounts.map((a) =>
        el(
          "tr",
          {},
          el("th", { scope: "row" }, el("span", { class: `swatch series-${a.series}`, "aria-hidden": "true" }), " ", a.label),
          el("td", { class: "num", text: a.requests.toLocaleString() }),
          el("td", { class: "num hide-narrow", text: a.errors.toLocaleString() }),
          el("td", { class: "num hide-narrow", text: a.fallbacks.toLocaleString() }),
          el("td", { class: "num", text: compact(a.tokens) }),
          el("td", { class: "num", text: money(a.cost) }),
        ),
      );
      if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6", class: "muted", text: "No requests in this period." })));
      body.replaceChildren(...rows);
      const costs = data.accounts.map((a) => a.cost).filter((c) => c !== null);
      $("stat-cost").textContent = costs.length ? money(costs.reduce((x, y) => x + y, 0)) : "$0";
      $("stat-cost-days").textContent = String(data.days.length);
    } catch (error) {
      if (error.status !== 401) $("usage-chart").replaceChildren(el("p", { class: "muted", text: `Usage unavailable: ${error.message}` }));
    } finally {
      usageBusy = false;
    }
  }

  for (const button of document.querySelectorAll(".seg[data-metric]")) {
    button.addEventListener("click", () => {
      usageMetric = button.dataset.metric;
      for (const other of document.querySelectorAll(".seg[data-metric]")) other.setAttribute("aria-pressed", String(other === button));
      scheduleUsage(true);
    });
  }
  $("usage-days").addEventListener("change", () => scheduleUsage(true));

  H.onState((next, previous) => {
    if (!previous || previous.recent.latest_request !== next.recent.latest_request) scheduleUsage();
  });
})();
