// Headway settings page. Plain script, no dependencies, no inline code (the CSP forbids it).
// It polls /api/state and re-renders what changed; every change is a JSON POST carrying the CSRF token.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const POLL_MS = 2000;
  const HIDDEN_POLL_MS = 10000;
  const $ = (id) => document.getElementById(id);

  let state = null;
  let clockOffset = 0; // server time − local time, seconds

  // ------------------------------------------------------------------ helpers

  let leaving = false; // a navigation started (Sign out's form post): a late 401 must not reload over it
  window.addEventListener("beforeunload", () => { leaving = true; });

  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
    if (method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401 && !leaving) {
      window.location.reload(); // signed out elsewhere: show how to sign in (not while this tab is leaving: Sign out)
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || `HTTP ${response.status}`);
      error.status = response.status;
      error.data = data || {};
      throw error;
    }
    return data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "hidden") node.hidden = true;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child);
    }
    return node;
  }

  const now = () => Date.now() / 1000 + clockOffset;

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "?";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return `${seconds}s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
    return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  }

  function clockTime(ts) {
    const date = new Date(ts * 1000);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function whenLabel(ts) {
    const date = new Date(ts * 1000);
    const today = new Date();
    const sameDay = date.toDateString() === today.toDateString();
    return sameDay ? clockTime(ts) : date.toLocaleDateString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
  }

  function bytes(n) {
    if (n === null || n === undefined) return "unknown";
    if (n < 1024) return `${n} B`;
    const units = ["KB", "MB", "GB", "TB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function compact(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e6) return `${(n / 1e6).toFixed(1).replace(/\.0$/, "")}M`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1).replace(/\.0$/, "")}k`;
    return String(n);
  }

  function money(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "$0";
    return v >= 0.1 ? `$${v.toFixed(2)}` : `$${v.toFixed(3)}`;
  }

  function toast(message, kind) {
    const node = el("div", { class: `toast${kind === "error" ? " error" : ""}`, text: message });
    $("toasts").append(node);
    setTimeout(() => node.remove(), kind === "error" ? 7000 : 3500);
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      const area = el("textarea", { class: "visually-hidden", "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
      area.remove();
      return ok;
    }
  }

  const KINDS = { "anthropic-api-key": "Anthropic API key", "openai-api-key": "OpenAI API key", chatgpt: "ChatGPT" };
  const HEALTH = {
    healthy: ["Healthy", "ok"],
    disabled: ["Disabled", "off"],
    cooling_down: ["Cooling down", "warn"],
    exhausted: ["Out of quota", "warn"],
    killswitch: ["Killswitch", "warn"],
    paused: ["Paused", "warn"],
    needs_login: ["Needs login", "bad"],
    auth_failed: ["Auth failing", "bad"],
    no_secret: ["No key stored", "bad"],
  };

  function healthPill(account) {
    const [label, level] = HEALTH[account.health] || [account.health.replace(/_/g, " "), "warn"];
    const pill = el("span", { class: `pill pill-${level}` });
    const text = el("span", { text: label });
    pill.append(text);
    if (account.blocked_until) {
      const until = el("span", { "data-until": account.blocked_until, "data-prefix": " · " });
      pill.append(until);
      pill.title = `until ${whenLabel(account.blocked_until)}`;
    }
    return pill;
  }

  // What the page's other scripts (accounts.js, settings.js, connect.js, usage.js, requests.js, relay.js, analysis.js,
  // health.js) share: the helpers, each new
  // state as it arrives (onState), the current one, and the dialogs. Nothing else is global.
  window.Headway = Object.freeze({
    api, el, toast, whenLabel, clockTime, duration, compact, money, bytes, healthPill, KINDS,
    onState: (listener) => {
      stateListeners.push(listener);
      if (state) listener(state, null); // registered after the first state arrived: it gets that one now
    },
    accountLabel: (id) => accountLabel(id),
    state: () => state,
    poll: () => poll(),
    confirmDialog: (title, text, okText) => confirmDialog(title, text, okText),
    promptDialog: (options) => promptDialog(options),
    copyText,
    agentConfigured: () => {
      if (agentsConfigured) return;
      agentsConfigured = true;
      if (state) renderChecklist(state);
    },
    setSettings: (settings) => { if (state) state.settings = settings; },
  });

  // ------------------------------------------------------------------ state polling

  let pollTimer = null;
  let failures = 0;

  async function poll() {
    clearTimeout(pollTimer);
    try {
      const next = await api("GET", "/api/state");
      clockOffset = next.now - Date.now() / 1000;
      failures = 0;
      render(next);
    } catch (error) {
      failures += 1;
      if (error.status !== 401) showOffline(true);
    }
    const delay = document.hidden ? HIDDEN_POLL_MS : Math.min(POLL_MS * (1 + failures), 8000);
    pollTimer = setTimeout(poll, delay);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });

  function showOffline(offline) {
    $("offline-banner").hidden = !offline;
    if (offline) setChip("error", "Not answering");
  }

  function setChip(kind, text) {
    $("gateway-chip").dataset.state = kind;
    $("gateway-chip-text").textContent = text;
  }

  const stateListeners = [];

  function render(next) {
    const previous = state;
    state = next;
    showOffline(false);
    setChip(next.paused ? "paused" : "ok", next.paused ? "Paused" : "Running");
    $("gateway-url").textContent = next.gateway_url;
    $("connect-base").textContent = next.gateway_url;
    $("paused-banner").hidden = !next.paused;
    renderSettingsError(next);
    renderStats(next);
    renderQuota(next);
    renderFallbacks(next);
    $("keychain-name").textContent = next.keychain || "unknown";
    $("keychain-name").classList.toggle("keychain-warn", /NOT encrypted|no secure keychain/i.test(next.keychain || ""));
    if (next.settings_error === null) $("settings-error").hidden = true;
    if (!previous || previous.recent.latest_request !== next.recent.latest_request) {
    }
    renderChecklist(next);
    for (const listener of stateListeners) {
      try { listener(next, previous); } catch (error) { console.error(error); }
    }
    tick();
  }

  function renderSettingsError(next) {
    const box = $("settings-error");
    const problems = next.settings_error || [];
    box.hidden = problems.length === 0;
    const list = $("settings-error-list");
    list.replaceChildren(...problems.map((p) => el("li", { text: p })));
    $("settings-error-file").textContent = next.settings_file;
  }

  function renderStats(next) {
    // The engine's one pool summary when it publishes one; else counted here the same way (enabled and usable).
    const summary = next.summary;
    const enabled = next.accounts.filter((a) => a.enabled);
    const ready = summary && Number.isFinite(summary.ready) ? summary.ready : enabled.filter((a) => a.health === "healthy").length;
    const total = summary && Number.isFinite(summary.total) ? summary.total : enabled.length;
    $("stat-ready").textContent = `${ready} of ${total}`;
    renderSummaryNote(summary);
    $("stat-requests").textContent = compact(next.recent.requests_24h);
    $("stat-fallbacks").textContent = compact(next.recent.fallbacks_24h);
  }

  // The pool's state in words, from the engine's summary (the same one the tray icon and `headway status` draw).
  const SUMMARY_WORDS = {
    healthy: ["All good", "ok"],
    low: ["Running low", "warn"],
    critical: ["Nearly out", "bad"],
    exhausted: ["Every account is blocked", "bad"],
    needs_login: ["An account needs login", "bad"],
    paused: ["Paused", "warn"],
    unknown: ["Nothing known yet", "off"],
  };

  function renderSummaryNote(summary) {
    const note = $("stat-ready-note");
    const words = summary && SUMMARY_WORDS[summary.state];
    note.hidden = !words;
    if (!words) return;
    // A family with no account ready (its agents get errors) is a warning even when the other family is healthy.
    note.dataset.level = words[1] === "ok" && summary.blocked_families && summary.blocked_families.length ? "warn" : words[1];
    if (summary.headline) {
      note.textContent = summary.headline; // the tray's and `headway status`'s own words
      return;
    }
    note.replaceChildren(document.createTextNode(words[0]));
    if (summary.next_reset) note.append(el("span", { "data-until": summary.next_reset, "data-prefix": " · usable again in " }));
  }

  // ------------------------------------------------------------------ overview: first-run checklist

  let agentsConfigured = false; // from /api/agents: an agent's config already points at Headway

  function renderChecklist(next) {
    const steps = {
      account: next.accounts.length > 0,
      agent: agentsConfigured || next.recent.agent_request_seen,
      request: next.recent.agent_request_seen,
    };
    const box = $("first-run");
    for (const item of box.querySelectorAll("[data-step]")) {
      const done = Boolean(steps[item.dataset.step]);
      item.dataset.done = String(done);
      item.querySelector('[data-role="state"]').textContent = done ? "done" : "not done";
    }
    box.hidden = Object.values(steps).every(Boolean);
  }

  // ------------------------------------------------------------------ overview: quota bars

  function windowRow(w) {
    const left = w.remaining_percent;
    const row = el("div", { class: "window-row" });
    const title = w.window_minutes ? `${w.name} (${duration(w.window_minutes * 60)} window)` : w.name;
    row.append(el("span", { class: "window-name", text: w.name, title }));
    const bar = el("div", {
      class: "bar",
      role: "meter",
      "aria-label": `${w.name} quota left`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": left === null ? "0" : String(left),
    });
    const fill = el("div", { class: "bar-fill" });
    const percent = left === null ? 0 : Math.max(0, Math.min(100, left));
    fill.style.width = `${percent}%`;
    fill.dataset.level = !w.current ? "stale" : percent < 10 ? "low" : percent < 30 ? "mid" : "ok";
    bar.append(fill);
    row.append(bar);
    const text = el("span", { class: "window-text" });
    text.append(el("strong", { text: left === null ? "?" : `${Math.round(left)}% left` }));
    if (!w.current) {
      text.append(document.createTextNode(" · reset passed"));
    } else if (w.resets_at) {
      text.append(el("span", { "data-until": w.resets_at, "data-prefix": " · resets in " }));
      text.title = `resets ${whenLabel(w.resets_at)}`;
    }
    row.append(text);
    return row;
  }

  const POOLS = [["anthropic", "Anthropic pool"], ["openai", "OpenAI pool"]];

  function ago(ts) {
    const seconds = now() - ts;
    if (seconds < 45) return "just now";
    return `${duration(seconds).replace(/ \d+s$/, "")} ago`;
  }

  function renderQuota(next) {
    const list = $("quota-list");
    $("quota-empty").hidden = next.accounts.length > 0;
    const items = [];
    for (const [family, title] of POOLS) {
      const members = next.accounts.filter((a) => (a.family || "anthropic") === family);
      if (!members.length) continue;
      items.push(el("li", { class: "quota-pool", text: title }));
      items.push(...members.map(quotaItem));
    }
    list.replaceChildren(...items);
  }

  function quotaItem(a) {
    const who = el("div", { class: "quota-who" });
    who.append(el("span", { class: "quota-name", text: a.label, title: a.label }));
    const meta = el("div", { class: "quota-meta" });
    meta.append(healthPill(a), el("span", { class: "badge", text: KINDS[a.kind] || a.kind }));
    if (a.plan_type) meta.append(el("span", { class: "badge", text: a.plan_type }));
    who.append(meta);
    if (a.detail && a.health !== "healthy" && a.health !== "disabled") {
      who.append(el("span", { class: "quota-detail", text: a.detail }));
    }
    const windows = el("div", { class: "windows" });
    const quota = a.quota;
    if (quota && quota.windows.length) {
      for (const w of quota.windows) windows.append(windowRow(w));
    } else {
      windows.append(el("p", { class: "no-quota", text: "Quota unknown until the first request." }));
    }
    if (quota && quota.updated_at) {
      const updated = el("span", { class: "quota-updated", "data-ago": quota.updated_at, title: `Last updated ${whenLabel(quota.updated_at)}` });
      updated.textContent = `Updated ${ago(quota.updated_at)}`;
      who.append(updated);
    }
    return el("li", { class: "quota-item", "data-account": a.id }, who, windows);
  }

  // countdowns: every [data-until] shows the time left
  function tick() {
    for (const node of document.querySelectorAll("[data-until]")) {
      const left = Number(node.dataset.until) - now();
      node.textContent = (node.dataset.prefix || "") + (left > 0 ? duration(left) : "now");
    }
    for (const node of document.querySelectorAll("[data-ago]")) node.textContent = `Updated ${ago(Number(node.dataset.ago))}`;
  }
  setInterval(tick, 1000);

  // ------------------------------------------------------------------ recent fallbacks

  function accountLabel(id) {
    const account = state && state.accounts.find((a) => a.id === id);
    return account ? account.label : id;
  }

  function renderFallbacks(next) {
    const items = next.recent.fallbacks;
    $("fallback-empty").hidden = items.length > 0;
    $("fallback-list").replaceChildren(
      ...items.map((f) => {
        const chain = el("span", { class: "chain" });
        f.chain.forEach((hop, index) => {
          const cut = hop.lastIndexOf(":");
          const id = hop.slice(0, cut);
          const status = hop.slice(cut + 1);
          const ok = /^\d+$/.test(status) && Number(status) < 400;
          if (index) chain.append(el("span", { class: "arrow", "aria-hidden": "true", text: "→" }));
          chain.append(el("span", { class: "hop", "data-ok": String(ok), text: `${accountLabel(id)} ${status}` }));
        });
        const what = el("div", {}, chain, el("div", { class: "muted small", text: `${f.model || "unknown model"} · ${f.route}` }));
        return el("li", {}, el("span", { class: "fallback-time", text: whenLabel(f.ts) }), what);
      }),
    );
  }

  // ------------------------------------------------------------------ overview: pause and quota buttons

  $("resume-button").addEventListener("click", async () => {
    try {
      await api("POST", "/api/settings", { changes: { "gateway.paused": false } });
      toast("Resumed: agent requests flow again.");
      poll();
    } catch (error) {
      toast(error.message, "error");
    }
  });

  $("refresh-quota").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const status = $("refresh-quota-status");
    button.disabled = true;
    button.textContent = "Refreshing…";
    status.className = "form-status refresh-status";
    status.textContent = "Asking the providers…";
    try {
      const result = await api("POST", "/api/quota/refresh");
      await poll();
      const at = clockTime(result.at);
      if (result.refreshed.length) {
        status.textContent = `Refreshed ${result.refreshed.join(", ")} at ${at}.`;
        status.classList.add("ok");
      } else if (result.failed.length) {
        status.textContent = `${result.failed.join(", ")} did not answer at ${at}; the log has why.`;
        status.classList.add("error");
      } else {
        status.textContent = `Checked at ${at}: API-key quotas update with every request, so there is nothing to ask.`;
      }
      if (result.refreshed.length && result.failed.length) status.textContent += ` ${result.failed.join(", ")} did not answer.`;
    } catch (error) {
      status.textContent = `Could not refresh: ${error.message}`;
      status.classList.add("error");
    } finally {
      button.disabled = false;
      button.textContent = "Refresh quota";
    }
  });

  // ------------------------------------------------------------------ dialogs

  function confirmDialog(title, text, okText) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okText;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    });
  }

  // Enter in the prompt submits its primary action: the form's only submit button is the primary one (implicit
  // submission takes the first submit button), and Cancel is a plain button.
  $("prompt-cancel").addEventListener("click", () => $("prompt-dialog").close("cancel"));

  function promptDialog({ title, label, help, value, type, okText, submit }) {
    const dialog = $("prompt-dialog");
    const form = $("prompt-form");
    const input = $("prompt-input");
    $("prompt-title").textContent = title;
    $("prompt-label").textContent = label;
    $("prompt-help").textContent = help || "";
    $("prompt-error").textContent = "";
    $("prompt-ok").textContent = okText || "Save";
    input.type = type || "text";
    input.value = value || "";
    input.removeAttribute("aria-invalid");
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
    if (value) input.select();
    return new Promise((resolve) => {
      const onSubmit = async (event) => {
        event.preventDefault();
        if ($("prompt-ok").disabled) return;
        $("prompt-ok").disabled = true;
        try {
          await submit(input.value);
          dialog.close("ok");
        } catch (error) {
          $("prompt-error").textContent = error.message;
          input.setAttribute("aria-invalid", "true");
          input.focus();
        } finally {
          $("prompt-ok").disabled = false;
        }
      };
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener(
        "close",
        () => {
          form.removeEventListener("submit", onSubmit);
          input.value = "";
          resolve(dialog.returnValue === "ok");
        },
        { once: true },
      );
    });
  }

  // ------------------------------------------------------------------ tabs (keyboard: arrows, Home, End)

  function setupTabs(list) {
    const tabs = Array.from(list.querySelectorAll('[role="tab"]'));
    const select = (tab, focus) => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        other.tabIndex = selected ? 0 : -1;
        $(other.getAttribute("aria-controls")).hidden = !selected;
      }
      if (focus) tab.focus();
    };
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        let next = null;
        if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
        else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
        else if (event.key === "Home") next = tabs[0];
        else if (event.key === "End") next = tabs[tabs.length - 1];
        if (next) {
          event.preventDefault();
          select(next, true);
        }
      });
    });
  }
  for (const list of document.querySelectorAll('[role="tablist"]')) setupTabs(list);

  // ------------------------------------------------------------------ navigation highlight

  const links = new Map(Array.from(document.querySelectorAll("[data-nav]")).map((a) => [a.dataset.nav, a]));
  const sections = Array.from(document.querySelectorAll(".page-section"));
  let currentSection = null;
  let navFrame = 0;

  function highlightNav() {
    navFrame = 0;
    const line = document.querySelector(".topbar").offsetHeight + (window.innerWidth <= 860 ? 60 : 20) + 40;
    let current = sections[0];
    for (const section of sections) {
      if (section.getBoundingClientRect().top <= line) current = section;
    }
    if (window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2) current = sections[sections.length - 1];
    if (!current || current.id === currentSection) return;
    currentSection = current.id;
    for (const [key, link] of links) link.setAttribute("aria-current", String(key === current.id));
    const link = links.get(current.id);
    const list = link && link.closest("ul");
    if (list && list.scrollWidth > list.clientWidth) {
      list.scrollTo({ left: link.offsetLeft - list.clientWidth / 2 + link.offsetWidth / 2, behavior: "instant" });
    }
  }
  window.addEventListener("scroll", () => { if (!navFrame) navFrame = requestAnimationFrame(highlightNav); }, { passive: true });
  const calm = window.matchMedia("(prefers-reduced-motion: reduce)");
  for (const [key, link] of links) {
    link.addEventListener("click", (event) => {
      const section = $(key);
      if (!section) return;
      event.preventDefault();
      section.scrollIntoView({ block: "start", behavior: calm.matches ? "instant" : "smooth" });
      const heading = section.querySelector("h2");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: true });
      }
      history.replaceState(null, "", `#${key}`);
    });
  }
  window.addEventListener("resize", () => { currentSection = null; highlightNav(); });
  highlightNav();

  // ------------------------------------------------------------------ start

  // The first poll once every section's script has run (deferred scripts all run before DOMContentLoaded).
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => poll(), { once: true });
  else poll();
})();
