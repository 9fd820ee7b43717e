// Headway settings page: the settings controls rendered from the schema, and the Debugging facts.
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("main")) return;
  const { api, toast, bytes, copyText } = H;
  const $ = (id) => document.getElementById(id);
  const pendingSettings = new Set(); // being saved: a poll must not put the old value back
  const dirtySettings = new Set(); // typed into, not saved yet


  function controlValue(input) {
    const control = input.dataset.control;
    if (control === "switch") return input.checked;
    if (control === "number") return input.value.trim() === "" ? null : Number(input.value);
    if (control === "select") return input.value === "" ? null : input.value;
    return input.value;
  }

  function showValue(input, value) {
    const control = input.dataset.control;
    if (control === "switch") input.checked = Boolean(value);
    else if (value === null || value === undefined) input.value = "";
    else if (Array.isArray(value)) input.value = value.join(", ");
    else input.value = String(value);
  }

  function fieldStatus(path, message, isError) {
    const input = document.querySelector(`[data-setting="${CSS.escape(path)}"]`);
    if (!input) return;
    const status = $(`${input.id}-status`);
    if (isError) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    if (!status) return;
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
    if (!isError && message) {
      setTimeout(() => { if (status.textContent === message) status.textContent = ""; }, 2000);
    }
  }

  function syncReadonly(values) {
    for (const node of document.querySelectorAll("[data-readonly]")) {
      const value = values[node.dataset.readonly];
      node.textContent =
        value === null || value === undefined || (Array.isArray(value) && !value.length) ? "not set" : Array.isArray(value) ? value.join(", ") : String(value);
    }
  }

  function syncSettings(values) {
    syncReadonly(values);
    for (const input of document.querySelectorAll("[data-setting]")) {
      const path = input.dataset.setting;
      if (!(path in values)) continue;
      if (pendingSettings.has(path) || dirtySettings.has(path) || document.activeElement === input) continue;
      showValue(input, values[path]);
    }
  }

  async function saveSetting(path, value) {
    pendingSettings.add(path);
    fieldStatus(path, "Saving…", false);
    try {
      const result = await api("POST", "/api/settings", { changes: { [path]: value } });
      dirtySettings.delete(path);
      const input = document.querySelector(`[data-setting="${CSS.escape(path)}"]`);
      if (input && document.activeElement !== input) showValue(input, result.settings[path]);
      fieldStatus(path, "Saved", false);
      H.setSettings(result.settings);
      H.poll();
      return true;
    } catch (error) {
      const problems = (error.data && error.data.problems) || {};
      fieldStatus(path, problems[path] || error.message, true);
      const input = document.querySelector(`[data-setting="${CSS.escape(path)}"]`);
      const state = H.state();
      if (input && input.dataset.control === "switch" && state) showValue(input, state.settings[path]);
      return false;
    } finally {
      pendingSettings.delete(path);
    }
  }

  for (const input of document.querySelectorAll("[data-setting]")) {
    const path = input.dataset.setting;
    if (input.dataset.control === "switch" || input.dataset.control === "select") {
      input.addEventListener("change", () => saveSetting(path, controlValue(input)));
    } else {
      input.addEventListener("input", () => dirtySettings.add(path));
      input.addEventListener("change", () => saveSetting(path, controlValue(input)));
      input.addEventListener("keydown", (event) => {
        const state = H.state();
        if (event.key === "Escape" && state) {
          dirtySettings.delete(path);
          showValue(input, state.settings[path]);
          fieldStatus(path, "", false);
        }
      });
    }
  }

  // ------------------------------------------------------------------ debugging facts

  function renderDebugging(next) {
    $("dumps-folder").textContent = next.dumps.folder;
    const d = next.dumps;
    $("dumps-size").textContent =
      d.size_bytes === null ? "unreadable" : d.size_bytes === 0 ? "empty" : `${bytes(d.size_bytes)} in ${d.dumps} dump${d.dumps === 1 ? "" : "s"}`;
    $("log-file").textContent = next.log.file || "(console only)";
    $("settings-file").textContent = next.settings_file;
  }

  for (const button of document.querySelectorAll("[data-copy-from]")) {
    button.addEventListener("click", async () => {
      const ok = await copyText($(button.dataset.copyFrom).textContent);
      toast(ok ? "Copied." : "Could not copy; select the text instead.", ok ? "" : "error");
    });
  }

  H.onState((next) => {
    syncSettings(next.settings);
    renderDebugging(next);
  });
})();
