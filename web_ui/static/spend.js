// The Budgets and models section (web_ui/templates/_spend.html, web_ui/views/spend.py). Plain script, no inline code.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 5000;

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
    if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
    return data;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function money(value) {
    return `$${Number(value || 0).toFixed(2)}`;
  }

  function spendText(account) {
    const b = account.spend;
    if (!b) return account.daily_usd || account.monthly_usd ? "…" : "no budget";
    const parts = [];
    if (b.daily_usd) parts.push(`${money(b.spent_today_usd)} of $${b.daily_usd} today`);
    if (b.monthly_usd) parts.push(`${money(b.spent_month_usd)} of $${b.monthly_usd} this month`);
    let text = parts.join(", ") + ` (${b.used_percent}% used)`;
    if (b.state === "over_budget") text = `Over budget — ${text}`;
    else if (b.state === "warning") text = `Warning — ${text}`;
    if (b.unpriced_models && b.unpriced_models.length) {
      text += `; price unknown for ${b.unpriced_models.join(", ")} (${b.unpriced_tokens} tokens)`;
    }
    return text;
  }

  function capInput(account, which, value) {
    const input = document.createElement("input");
    input.type = "text";
    input.inputMode = "decimal";
    input.id = `budget-${which}-${account.id}`;
    input.setAttribute("aria-label", `${account.label}: ${which} cap in USD`);
    input.value = value === null || value === undefined ? "" : String(value);
    return input;
  }

  const editing = new Set();

  function renderBudgets(accounts) {
    const rows = $("budget-rows");
    $("budgets-empty").hidden = accounts.length > 0;
    for (const account of accounts) {
      let row = rows.querySelector(`tr[data-account="${CSS.escape(account.id)}"]`);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.account = account.id;
        const daily = document.createElement("td");
        daily.append(capInput(account, "daily", account.daily_usd));
        const monthly = document.createElement("td");
        monthly.append(capInput(account, "monthly", account.monthly_usd));
        const spend = cell("");
        spend.className = "budget-spend";
        const actions = document.createElement("td");
        const save = document.createElement("button");
        save.type = "button";
        save.className = "btn btn-small";
        save.textContent = "Save";
        save.addEventListener("click", () => saveBudget(account.id, row));
        actions.append(save);
        row.append(cell(account.label), daily, monthly, spend, actions);
        for (const input of row.querySelectorAll("input")) input.addEventListener("input", () => editing.add(account.id));
        rows.append(row);
      } else if (!editing.has(account.id)) {
        row.querySelector(`#budget-daily-${CSS.escape(account.id)}`).value = account.daily_usd ?? "";
        row.querySelector(`#budget-monthly-${CSS.escape(account.id)}`).value = account.monthly_usd ?? "";
      }
      row.dataset.state = account.spend ? account.spend.state : "none";
      row.querySelector(".budget-spend").textContent = spendText(account);
    }
    const known = new Set(accounts.map((a) => a.id));
    for (const row of [...rows.querySelectorAll("tr")]) if (!known.has(row.dataset.account)) row.remove();
  }

  async function saveBudget(id, row) {
    const status = $("budget-status");
    const body = {
      daily_usd: row.querySelector(`#budget-daily-${CSS.escape(id)}`).value,
      monthly_usd: row.querySelector(`#budget-monthly-${CSS.escape(id)}`).value,
    };
    try {
      const result = await api("POST", `/api/accounts/${encodeURIComponent(id)}/budget`, body);
      editing.delete(id);
      status.dataset.kind = "ok";
      status.textContent = result.budget ? `Saved the budget of ${id}.` : `${id} has no budget now.`;
      await refresh();
    } catch (err) {
      status.dataset.kind = "error";
      status.textContent = err.message;
    }
  }

  let modelsDirty = false;

  function renderModels(models) {
    if (!modelsDirty) {
      $("models-json").value = JSON.stringify({ aliases: models.aliases, routes: models.routes }, null, 2);
    }
    const list = $("serving-list");
    list.replaceChildren();
    for (const item of models.serving) {
      const li = document.createElement("li");
      const name = item.real_model ? `${item.model} (${item.real_model})` : item.model;
      li.textContent = `${name}: ${item.accounts.length ? item.accounts.join(", ") : "no account"}`;
      list.append(li);
    }
  }

  async function saveModels() {
    const status = $("models-status");
    let parsed;
    try {
      parsed = JSON.parse($("models-json").value || "{}");
    } catch (err) {
      status.dataset.kind = "error";
      status.textContent = `Not valid JSON: ${err.message}`;
      return;
    }
    try {
      const result = await api("POST", "/api/models", parsed);
      modelsDirty = false;
      status.dataset.kind = "ok";
      status.textContent = "Saved the aliases and routes.";
      renderModels(result.models);
    } catch (err) {
      status.dataset.kind = "error";
      status.textContent = err.message;
    }
  }

  async function refresh() {
    try {
      const data = await api("GET", "/api/spend");
      renderBudgets(data.accounts);
      renderModels(data.models);
    } catch (_) {
      // the main script shows when Headway does not answer
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("models-json").addEventListener("input", () => { modelsDirty = true; });
    $("models-save").addEventListener("click", saveModels);
    refresh();
    setInterval(refresh, POLL_MS);
  });
})();
