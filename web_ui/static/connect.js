// Headway settings page: Connect an agent (snippets, writing agent configs, the access key).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("connect")) return;
  const { api, el, toast, copyText } = H;
  const $ = (id) => document.getElementById(id);


  async function loadAgents() {
    try {
      const data = await api("GET", "/api/agents");
      keyHint = data.key_hint;
      if (!keyShown) $("access-key").textContent = keyHint;
      for (const agent of data.agents) renderAgent(agent);
    } catch (error) {
      for (const panel of document.querySelectorAll(".agent-panel")) {
        panel.querySelector('[data-role="status"]').textContent = error.message;
      }
    }
  }

  function renderAgent(agent) {
    const panel = document.querySelector(`.agent-panel[data-agent="${CSS.escape(agent.name)}"]`);
    if (!panel) return;
    const role = (name) => panel.querySelector(`[data-role="${name}"]`);
    role("snippet").textContent = agent.snippet;
    role("path").textContent = agent.path ? `Writes ${agent.path}` : "Set these in the environment OpenHands runs in (it keeps its own settings store).";
    role("configured").hidden = !agent.configured;
    if (agent.configured) H.agentConfigured(); // the first-run checklist's second step
    const notes = [...(agent.notes || [])];
    if (agent.problem) notes.unshift(agent.problem);
    role("notes").replaceChildren(...notes.map((n) => el("li", { text: n })));
  }

  for (const panel of document.querySelectorAll(".agent-panel")) {
    const name = panel.dataset.agent;
    const status = panel.querySelector('[data-role="status"]');
    const copy = panel.querySelector('[data-action="copy-snippet"]');
    copy.addEventListener("click", async () => {
      try {
        const data = await api("POST", `/api/agents/${encodeURIComponent(name)}/snippet`);
        const ok = await copyText(data.snippet);
        toast(ok ? "Copied, with your access key." : "Could not copy.", ok ? "" : "error");
      } catch (error) {
        toast(error.message, "error");
      }
    });
    const write = panel.querySelector('[data-action="write-config"]');
    if (write) {
      write.addEventListener("click", async () => {
        write.disabled = true;
        status.className = "form-status";
        status.textContent = "Writing…";
        try {
          const result = await api("POST", `/api/agents/${encodeURIComponent(name)}/write`);
          status.textContent = result.changed
            ? `Wrote ${result.path}${result.backup ? ` (previous version kept as ${result.backup})` : ""}.`
            : `${result.path} already points at Headway; nothing changed.`;
          status.classList.add("ok");
          renderAgent({ ...result.agent, notes: [...(result.notes || [])] });
        } catch (error) {
          status.textContent = error.message;
          status.classList.add("error");
        } finally {
          write.disabled = false;
        }
      });
    }
  }

  let keyShown = false;
  let keyHint = "hw-••••••••";
  $("copy-access-key").addEventListener("click", async () => {
    try {
      const data = await api("POST", "/api/access-key");
      const ok = await copyText(data.key);
      toast(ok ? "Access key copied." : "Could not copy.", ok ? "" : "error");
    } catch (error) {
      toast(error.message, "error");
    }
  });
  $("show-access-key").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    try {
      keyShown = !keyShown;
      $("access-key").textContent = keyShown ? (await api("POST", "/api/access-key")).key : keyHint;
      button.textContent = keyShown ? "Hide" : "Show";
      button.setAttribute("aria-pressed", String(keyShown));
    } catch (error) {
      keyShown = false;
      toast(error.message, "error");
    }
  });

  loadAgents();
})();
