// Headway settings page: the Health check (the same checks as `headway doctor`).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("health")) return;
  const { api, el } = H;
  const $ = (id) => document.getElementById(id);


  const HEALTH_PILL = { ok: ["pill-ok", "ok"], warn: ["pill-warn", "warning"], fail: ["pill-bad", "failed"] };

  function healthItem(check) {
    const [pill, word] = HEALTH_PILL[check.status] || ["pill-off", check.status];
    return el(
      "li",
      { class: "health-item", "data-status": check.status },
      el("span", { class: `pill ${pill}`, text: word }),
      " ",
      el("strong", { text: check.check }),
      " ",
      el("span", { text: check.detail }),
      check.fix && check.status !== "ok" ? el("p", { class: "muted small health-fix", text: `Fix: ${check.fix}` }) : null,
    );
  }

  const healthRun = $("health-run");
  if (healthRun) {
    healthRun.addEventListener("click", async () => {
      healthRun.disabled = true;
      $("health-status").textContent = "Checking…";
      try {
        const data = await api("POST", "/api/health");
        $("health-list").replaceChildren(...data.checks.map(healthItem));
        const parts = [];
        if (data.failed) parts.push(`${data.failed} failed`);
        if (data.warned) parts.push(`${data.warned} with warnings`);
        $("health-status").textContent = parts.length ? `${data.checks.length} checks: ${parts.join(", ")}.` : `All ${data.checks.length} checks passed.`;
      } catch (error) {
        $("health-status").textContent = `The checks could not run: ${error.message}`;
      } finally {
        healthRun.disabled = false;
      }
    });
  }
})();
