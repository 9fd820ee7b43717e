// Headway settings page: the Accounts section (pools, each account's card with Test and history; adding an API
// key; ChatGPT sign-in). Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("account-list")) return;
  const { api, el, toast, whenLabel, compact, healthPill, KINDS, confirmDialog, promptDialog } = H;
  const $ = (id) => document.getElementById(id);
  const poll = () => H.poll();
  const accountLabel = (id) => H.accountLabel(id);

  // ------------------------------------------------------------------ accounts

  const cards = new Map();

  function parseKillswitch(text) {
    const out = {};
    for (const part of text.split(",")) {
      if (!part.trim()) continue;
      const [name, value] = part.split("=").map((s) => s.trim());
      if (!name || value === undefined || value === "" || isNaN(Number(value))) {
        throw new Error(`write each window as name=percent, e.g. 5h=10 (got "${part.trim()}")`);
      }
      out[name] = Number(value);
    }
    return Object.keys(out).length ? out : null;
  }

  function formatKillswitch(map) {
    return map ? Object.entries(map).map(([k, v]) => `${k}=${v}`).join(", ") : "";
  }

  function makeCard(account) {
    const id = account.id;
    const card = el("li", { class: "account-card", "data-account": id });
    const refs = {};
    refs.rank = el("span", { class: "account-rank", "aria-hidden": "true" });
    refs.title = el("span", { class: "account-title" });
    refs.kind = el("span", { class: "badge" });
    refs.health = el("span", {});
    refs.enabled = el("input", { type: "checkbox", class: "switch", role: "switch", id: `enabled-${id}` });
    const enabledWrap = el("div", { class: "account-enabled" }, el("label", { for: `enabled-${id}`, text: "Enabled" }), refs.enabled);
    card.append(el("div", { class: "account-top" }, refs.rank, refs.title, refs.kind, refs.health, el("span", { class: "spacer" }), enabledWrap));
    refs.info = el("div", { class: "account-info" });
    refs.detail = el("p", { class: "account-detail", hidden: true });
    card.append(refs.info, refs.detail);

    refs.up = el("button", { type: "button", class: "btn btn-small btn-icon", text: "↑" });
    refs.down = el("button", { type: "button", class: "btn btn-small btn-icon", text: "↓" });
    refs.rename = el("button", { type: "button", class: "btn btn-small", text: "Rename" });
    refs.key = el("button", { type: "button", class: "btn btn-small", text: account.kind === "chatgpt" ? "Sign in again" : "Replace key" });
    refs.remove = el("button", { type: "button", class: "btn btn-small btn-ghost", text: "Remove" });
    refs.test = el("button", { type: "button", class: "btn btn-small", text: "Test" });
    card.append(
      el("div", { class: "account-actions" }, refs.up, refs.down, el("span", { class: "sep", "aria-hidden": "true" }), refs.test, refs.rename, refs.key, refs.remove),
    );
    refs.testResult = el("p", { class: "test-result", "aria-live": "polite", hidden: true });
    card.append(refs.testResult);

    refs.minInput = el("input", { type: "number", id: `min-${id}`, min: "0", max: "100", step: "any", inputmode: "decimal" });
    refs.killInput = el("input", { type: "text", id: `kill-${id}`, spellcheck: "false", autocomplete: "off", placeholder: "window=percent, …" });
    refs.killHelp = el("p", { class: "help", id: `kill-${id}-help` });
    refs.killInput.setAttribute("aria-describedby", `kill-${id}-help`);
    refs.limitsStatus = el("p", { class: "form-status", "aria-live": "polite" });
    refs.minHelp = el("span", { class: "muted small" });
    const saveLimits = el("button", { type: "button", class: "btn btn-small", text: "Save limits" });
    refs.minHelp.id = `min-${id}-help`;
    refs.minHelp.className = "help";
    refs.minInput.setAttribute("aria-describedby", `min-${id}-help`);
    refs.limits = el(
      "details",
      { class: "limits" },
      el("summary", { text: "Limits" }),
      el(
        "div",
        { class: "limits-body" },
        el("div", { class: "limit-field" }, el("label", { for: `min-${id}`, text: "Skip below this quota left (%)" }), refs.minInput, refs.minHelp),
        el("div", { class: "limit-field" }, el("label", { for: `kill-${id}`, text: "Killswitch per window (% left)" }), refs.killInput, refs.killHelp),
        el("div", { class: "limit-actions" }, saveLimits, refs.limitsStatus),
      ),
    );
    card.append(refs.limits);
    refs.history = historyPanel(id);
    card.append(refs.history);
    card._refs = refs;

    refs.test.addEventListener("click", () => testAccount(id, refs));

    refs.enabled.addEventListener("change", async () => {
      try {
        await api("POST", `/api/accounts/${encodeURIComponent(id)}`, { enabled: refs.enabled.checked });
        toast(`${accountLabel(id)} ${refs.enabled.checked ? "enabled" : "disabled"}.`);
        poll();
      } catch (error) {
        refs.enabled.checked = !refs.enabled.checked;
        toast(error.message, "error");
      }
    });
    refs.up.addEventListener("click", () => move(id, -1));
    refs.down.addEventListener("click", () => move(id, 1));
    refs.rename.addEventListener("click", () =>
      promptDialog({
        title: "Rename account",
        label: "Label",
        value: accountLabel(id),
        okText: "Rename",
        submit: async (label) => {
          await api("POST", `/api/accounts/${encodeURIComponent(id)}`, { label });
          toast("Renamed.");
          poll();
        },
      }),
    );
    refs.key.addEventListener("click", () => {
      const account = H.state().accounts.find((a) => a.id === id);
      if (account && account.kind === "chatgpt") {
        startLogin("browser", account.label);
        $("add-account").scrollIntoView();
        return;
      }
      promptDialog({
        title: `Replace the key of ${accountLabel(id)}`,
        label: "New API key",
        help: "Goes straight to your keychain; the old key is replaced.",
        type: "password",
        okText: "Replace key",
        submit: async (key) => {
          const result = await api("POST", `/api/accounts/${encodeURIComponent(id)}/key`, { api_key: key });
          toast(result.warning ? `Key replaced. Note: ${result.warning}.` : "Key replaced.");
          poll();
        },
      });
    });
    refs.remove.addEventListener("click", async () => {
      const label = accountLabel(id);
      const ok = await confirmDialog(`Remove ${label}?`, `Headway stops using ${label} and deletes its key or login from your keychain. This cannot be undone.`, "Remove");
      if (!ok) return;
      try {
        await api("POST", `/api/accounts/${encodeURIComponent(id)}/remove`, { confirm: id });
        toast(`Removed ${label}.`);
        poll();
      } catch (error) {
        toast(error.message, "error");
      }
    });
    saveLimits.addEventListener("click", async () => {
      refs.limitsStatus.className = "form-status";
      let killswitch;
      try {
        killswitch = parseKillswitch(refs.killInput.value);
      } catch (error) {
        refs.limitsStatus.textContent = error.message;
        refs.limitsStatus.classList.add("error");
        refs.killInput.setAttribute("aria-invalid", "true");
        return;
      }
      const min = refs.minInput.value.trim() === "" ? null : Number(refs.minInput.value);
      try {
        await api("POST", `/api/accounts/${encodeURIComponent(id)}`, { min_remaining_percent: min, killswitch });
        refs.killInput.removeAttribute("aria-invalid");
        refs.limitsStatus.textContent = "Saved";
        refs.limitsStatus.classList.add("ok");
        refs.limitsDirty = false;
        poll();
      } catch (error) {
        const problems = (error.data && error.data.problems) || {};
        refs.limitsStatus.textContent = Object.values(problems).join("; ") || error.message;
        refs.limitsStatus.classList.add("error");
      }
    });
    for (const input of [refs.minInput, refs.killInput]) input.addEventListener("input", () => { refs.limitsDirty = true; });
    return card;
  }

  function updateCard(card, account, index, total) {
    const r = card._refs;
    card.dataset.enabled = String(account.enabled);
    r.rank.textContent = String(index + 1);
    r.title.textContent = account.label;
    r.kind.textContent = KINDS[account.kind] || account.kind;
    r.health.replaceChildren(healthPill(account));
    if (document.activeElement !== r.enabled) r.enabled.checked = account.enabled;
    r.enabled.setAttribute("aria-label", `${account.label} enabled`);
    const info = [el("span", {}, "id ", el("code", { text: account.id }))];
    if (account.key_hint) info.push(el("span", {}, "key ", el("code", { text: account.key_hint })));
    if (account.email) info.push(el("span", { text: account.email }));
    if (account.plan_type) info.push(el("span", { text: `plan ${account.plan_type}` }));
    if (account.last_ok_at) info.push(el("span", { text: `last success ${whenLabel(account.last_ok_at)}` }));
    r.info.replaceChildren(...info);
    const showDetail = account.health !== "healthy" && account.health !== "disabled" && (account.detail || account.last_error);
    r.detail.hidden = !showDetail;
    r.detail.textContent = showDetail ? account.detail || account.last_error : "";
    r.detail.classList.toggle("bad", ["needs_login", "auth_failed", "no_secret"].includes(account.health));
    r.up.disabled = index === 0;
    r.down.disabled = index === total - 1;
    r.test.setAttribute("aria-label", `Test ${account.label}`);
    r.up.setAttribute("aria-label", `Move ${account.label} up`);
    r.down.setAttribute("aria-label", `Move ${account.label} down`);
    r.rename.setAttribute("aria-label", `Rename ${account.label}`);
    r.key.setAttribute("aria-label", `${account.kind === "chatgpt" ? "Sign in again to" : "Replace the key of"} ${account.label}`);
    r.remove.setAttribute("aria-label", `Remove ${account.label}`);
    const global = H.state() ? H.state().global_min_remaining_percent : 0;
    r.minHelp.textContent = `Overrides the global ${global}%; leave blank to use it.`;
    const names = account.quota ? account.quota.windows.map((w) => w.name) : [];
    r.killHelp.textContent = `e.g. 5h=10, weekly=5: a hard stop while a window has less left. ${names.length ? `This account's windows: ${names.join(", ")}.` : "Its windows show after the first request."}`;
    const editing = r.limitsDirty || r.limits.contains(document.activeElement);
    if (!editing) {
      r.minInput.value = account.min_remaining_percent === null || account.min_remaining_percent === undefined ? "" : String(account.min_remaining_percent);
      r.killInput.value = formatKillswitch(account.killswitch);
    }
  }

  const familyOf = (account) => account.family || (account.kind === "anthropic-api-key" ? "anthropic" : "openai");

  function renderAccounts(next) {
    $("accounts-empty").hidden = next.accounts.length > 0;
    const seen = new Set();
    const focused = document.activeElement;
    for (const pool of document.querySelectorAll("#account-list .pool")) {
      const members = next.accounts.filter((a) => familyOf(a) === pool.dataset.family);
      const list = pool.querySelector(".account-list");
      pool.querySelector('[data-role="pool-empty"]').hidden = members.length > 0 || next.accounts.length === 0;
      pool.hidden = members.length === 0 && next.accounts.length === 0;
      const order = members.map((account, index) => {
        let card = cards.get(account.id);
        if (!card) {
          card = makeCard(account);
          cards.set(account.id, card);
        }
        updateCard(card, account, index, members.length);
        seen.add(account.id);
        return card;
      });
      const current = Array.from(list.children);
      if (current.length !== order.length || current.some((node, i) => node !== order[i])) {
        list.append(...order);
        if (focused && focused.isConnected && focused !== document.activeElement) focused.focus();
      }
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
  }

  // ------------------------------------------------------------------ accounts: Test and history

  async function testAccount(id, refs) {
    const out = refs.testResult;
    refs.test.disabled = true;
    out.hidden = false;
    out.className = "test-result";
    out.textContent = "Sending one tiny request…";
    try {
      const result = await api("POST", `/api/accounts/${encodeURIComponent(id)}/test`);
      out.dataset.ok = String(result.ok);
      const latency = result.latency_ms === null ? "" : ` in ${Math.round(result.latency_ms).toLocaleString()} ms`;
      out.textContent = result.ok
        ? `Works: ${result.model} answered${latency}.`
        : result.sent
          ? `Failed${latency} (${result.model}): ${result.detail}`
          : `Not tested: ${result.detail.replace(/^not sent: /, "")}`;
      out.classList.add(result.ok ? "ok" : "error");
      poll();
    } catch (error) {
      out.textContent = `The test could not run: ${error.message}`;
      out.classList.add("error");
    } finally {
      refs.test.disabled = false;
    }
  }

  function historyPanel(id) {
    const chart = el("div", { class: "chart activity" });
    const totals = el("p", { class: "muted small", "aria-live": "polite" });
    let unit = "hour";
    let metric = "requests";
    const seg = (group, values, pick) => {
      const box = el("div", { class: "segmented", role: "group", "aria-label": group });
      for (const [value, label] of values) {
        const button = el("button", { type: "button", class: "seg", text: label, "aria-pressed": String(value === values[0][0]) });
        button.addEventListener("click", () => {
          for (const other of box.children) other.setAttribute("aria-pressed", String(other === button));
          pick(value);
          load();
        });
        box.append(button);
      }
      return box;
    };
    const controls = el(
      "div",
      { class: "chart-controls" },
      seg("Period", [["hour", "24 hours"], ["day", "30 days"]], (v) => { unit = v; }),
      seg("Show", [["requests", "Requests"], ["tokens", "Tokens"]], (v) => { metric = v; }),
    );
    const details = el("details", { class: "limits history" }, el("summary", { text: "History" }), el("div", { class: "history-body" }, controls, chart, totals));
    async function load() {
      const width = Math.round(chart.clientWidth || 640);
      try {
        const data = await api("GET", `/api/accounts/${encodeURIComponent(id)}/activity?unit=${unit}&metric=${metric}&width=${width}`);
        const svg = new DOMParser().parseFromString(data.svg, "image/svg+xml").documentElement;
        if (svg && svg.nodeName === "svg") chart.replaceChildren(document.importNode(svg, true));
        const t = data.totals;
        const span = unit === "hour" ? "last 24 hours" : "last 30 days";
        totals.textContent = `${span}: ${t.requests.toLocaleString()} request${t.requests === 1 ? "" : "s"}${t.errors ? ` (${t.errors} failed)` : ""}, ${compact(t.tokens)} tokens.`;
      } catch (error) {
        chart.replaceChildren(el("p", { class: "muted", text: `History unavailable: ${error.message}` }));
      }
    }
    let drawnWidth = 0;
    const loadAtWidth = () => {
      drawnWidth = Math.round(chart.clientWidth);
      load();
    };
    details.addEventListener("toggle", () => { if (details.open) loadAtWidth(); });
    details._reload = () => { if (details.open) loadAtWidth(); };
    // Drawn for its width (its text stays the page's size): draw again when that changes much.
    window.addEventListener("resize", () => {
      if (details.isConnected && details.open && Math.abs(Math.round(chart.clientWidth) - drawnWidth) > 40) loadAtWidth();
    });
    return details;
  }

  async function move(id, delta) {
    // Within its pool: the order that matters is per family (an OpenAI key above an Anthropic key changes nothing).
    const account = H.state().accounts.find((a) => a.id === id);
    if (!account) return;
    const family = familyOf(account);
    const pool = H.state().accounts.filter((a) => familyOf(a) === family).map((a) => a.id);
    const from = pool.indexOf(id);
    const to = from + delta;
    if (from < 0 || to < 0 || to >= pool.length) return;
    pool.splice(to, 0, pool.splice(from, 1)[0]);
    const rest = H.state().accounts.filter((a) => familyOf(a) !== family).map((a) => a.id);
    const ids = family === "anthropic" ? [...pool, ...rest] : [...rest, ...pool];
    try {
      await api("POST", "/api/account-order", { ids });
      await poll();
      const card = cards.get(id);
      const target = card && card._refs[delta < 0 ? "up" : "down"];
      if (target && !target.disabled) target.focus();
      else if (card) card._refs[delta < 0 ? "down" : "up"].focus();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  // add an API key account
  $("apikey-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const status = $("apikey-status");
    status.className = "form-status";
    status.textContent = "Adding…";
    const body = { provider: form.provider.value, label: form.label.value, api_key: form.api_key.value };
    try {
      const result = await api("POST", "/api/accounts", body);
      form.api_key.value = "";
      form.label.value = "";
      status.textContent = result.warning ? `Added ${result.account.label}. Note: ${result.warning}.` : `Added ${result.account.label}.`;
      status.classList.add("ok");
      poll();
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("error");
    }
  });

  // ------------------------------------------------------------------ ChatGPT sign-in

  let flowId = null;
  let flowTimer = null;

  function showFlow(flow) {
    const box = $("login-flow");
    if (!box) return;
    box.hidden = false;
    box.dataset.state = flow.state;
    $("login-flow-message").textContent = flow.message;
    const waiting = flow.state === "waiting";
    $("login-flow-link-row").hidden = !(waiting && flow.kind === "browser");
    $("login-flow-code-row").hidden = !(waiting && flow.kind === "device");
    if (flow.kind === "browser") $("login-flow-link").href = flow.url;
    if (flow.kind === "device") {
      $("login-flow-device-url").href = flow.url;
      $("login-flow-device-url").textContent = flow.url;
      $("login-flow-code").textContent = flow.user_code;
    }
    $("login-flow-cancel").hidden = !waiting;
  }

  async function watchFlow() {
    clearTimeout(flowTimer);
    if (!flowId) return;
    try {
      const flow = await api("GET", `/api/chatgpt/logins/${encodeURIComponent(flowId)}`);
      showFlow(flow);
      if (flow.state === "waiting") {
        flowTimer = setTimeout(watchFlow, 1500);
        return;
      }
      if (flow.state === "done") toast(flow.message);
      flowId = null;
      setLoginButtons(false);
      poll();
    } catch (error) {
      flowTimer = setTimeout(watchFlow, 3000);
    }
  }

  function setLoginButtons(busy) {
    for (const id of ["chatgpt-browser", "chatgpt-device"]) {
      const button = $(id);
      if (button) button.disabled = busy;
    }
  }

  async function startLogin(kind, label) {
    if (flowId) {
      toast("A sign-in is already in progress; finish or cancel it first.", "error");
      return;
    }
    const popup = kind === "browser" ? window.open("about:blank", "_blank") : null;
    setLoginButtons(true);
    try {
      const flow = await api("POST", `/api/chatgpt/${kind}-login`, { label: label || null });
      flowId = flow.id;
      showFlow(flow);
      if (popup) popup.location.href = flow.url;
      flowTimer = setTimeout(watchFlow, 1500);
    } catch (error) {
      if (popup) popup.close();
      setLoginButtons(false);
      showFlow({ state: "failed", kind, message: error.message });
    }
  }

  if ($("chatgpt-browser")) {
    $("chatgpt-browser").addEventListener("click", () => startLogin("browser", $("chatgpt-label").value.trim()));
    $("chatgpt-device").addEventListener("click", () => startLogin("device", $("chatgpt-label").value.trim()));
    $("login-flow-cancel").addEventListener("click", async () => {
      if (!flowId) return;
      try {
        showFlow(await api("POST", `/api/chatgpt/logins/${encodeURIComponent(flowId)}/cancel`));
      } catch (error) {
        toast(error.message, "error");
      }
      watchFlow();
    });
  }

  H.onState((next, previous) => {
    renderAccounts(next);
    if (previous && previous.recent.latest_request !== next.recent.latest_request) {
      for (const card of cards.values()) card._refs.history._reload(); // an open history follows new requests
    }
  });
})();
