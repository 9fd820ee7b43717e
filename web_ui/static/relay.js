// Headway settings page: the Relay section (deploy the Worker, its status and savings, turn it off).
// Uses the helpers app.js shares as window.Headway; no inline code (the CSP forbids it).
"use strict";

(() => {
  const H = window.Headway;
  if (!H || !document.getElementById("relay-form")) return;
  const { api, el, toast, bytes, clockTime, confirmDialog } = H;
  const $ = (id) => document.getElementById(id);
  const poll = () => H.poll();


  let relayJobId = null;
  let relayTimer = null;
  let relayFormFilled = false;

  function percent(v) {
    return v === null || v === undefined ? "–" : `${v}%`;
  }

  function renderRelay(next) {
    const r = next.relay;
    if (!r) return;
    const pill = $("relay-pill");
    const setUp = Boolean(r.url);
    const [label, level] = r.enabled ? ["Relay on", "ok"] : setUp ? ["Relay off", "off"] : ["Not set up", "off"];
    pill.textContent = label;
    pill.className = `pill pill-${level}`;
    $("relay-state").textContent = r.enabled
      ? `On: requests with an agent session id go through the Worker${r.fallback_to_direct ? " (direct if it fails)" : ""}.`
      : setUp ? "Off: requests go directly to the providers." : "Not set up: deploy the Worker below.";
    $("relay-url").textContent = r.url || "not set up";
    $("relay-transport").textContent = r.transport === "websocket" ? "WebSocket, one per session" : "HTTP, one POST per request";
    $("relay-storage").textContent = `${r.storage === "kv" ? "KV" : "Durable Object"} · Worker ${r.worker_name}`;
    $("relay-secret").textContent = r.secret_in_keychain === null ? "keychain unreadable" : r.secret_in_keychain ? "in the keychain" : setUp ? "missing: deploy again" : "none yet";
    $("relay-allowlist").textContent = r.upstreams ? r.upstreams.join(", ") : setUp ? "any (deployed before the allowlist)" : "–";
    const upstreamsWarning = $("relay-allowlist-warning");
    upstreamsWarning.textContent = r.upstreams_warning || "";
    upstreamsWarning.hidden = !r.upstreams_warning;
    $("relay-keeps").textContent = setUp ? `each session's last body for ${r.ttl_hours} h after its last use` : "nothing";
    $("relay-forget-sessions").hidden = !setUp;
    const probe = r.last_probe;
    const probeNode = $("relay-probe");
    probeNode.textContent = probe
      ? probe.ok === null ? probe.detail : `${probe.ok ? "Answered" : "Did not answer"} at ${clockTime(probe.at)}: ${probe.detail}.`.replace(/\.\.$/, ".")
      : "Not checked yet.";
    probeNode.className = probe && probe.ok === false ? "form-error" : "";
    $("relay-check").hidden = !setUp;
    $("relay-off-controls").hidden = !(r.enabled || setUp);
    $("relay-disable").textContent = r.enabled ? "Turn the relay off…" : "Forget the relay…";
    $("relay-forget").disabled = !r.enabled;
    if (!r.enabled && setUp) $("relay-forget").checked = true;
    $("relay-setup-title").textContent = setUp ? "Deploy again or upgrade" : "Deploy the Worker";
    if (!relayFormFilled) {
      relayFormFilled = true;
      $("relay-account").value = r.account_id || "";
      $("relay-worker-name").value = r.worker_name || "headway-relay";
      $("relay-storage-choice").value = r.storage || "durable_object";
      $("relay-transport-choice").value = r.transport || "http";
    }
    renderRelayTraffic(r.traffic);
    if (r.setup && r.setup.state === "running" && !relayJobId) {
      relayJobId = r.setup.id;
      showRelayJob(r.setup);
      relayTimer = setTimeout(watchRelayJob, 1000);
    }
  }

  function renderRelayTraffic(traffic) {
    const totals = (traffic && traffic.totals) || null;
    const any = totals && totals.requests > 0;
    $("relay-sent").textContent = any ? bytes(totals.sent_bytes) : "–";
    $("relay-body").textContent = any ? bytes(totals.body_bytes) : "–";
    $("relay-saved").textContent = any ? percent(totals.saved_percent) : "–";
    if (any) {
      const parts = [`${totals.requests} request${totals.requests === 1 ? "" : "s"}: ${totals.full_syncs} full, ${totals.patches} patches`];
      if (totals.oneshots) parts.push(`${totals.oneshots} one-off`);
      if (totals.resyncs) parts.push(`${totals.resyncs} resynced`);
      if (totals.failures) parts.push(`${totals.failures} went direct`);
      $("relay-counts").textContent = parts.join(", ") + ".";
    } else {
      $("relay-counts").textContent = traffic && traffic.last_error ? `No request relayed yet. Last error: ${traffic.last_error}` : "No request relayed yet.";
    }
    const sessions = (traffic && traffic.sessions) || [];
    const body = $("relay-sessions").querySelector("tbody");
    const rows = sessions.slice(0, 20).map((s) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, el("code", { text: s.session_id.length > 28 ? `${s.session_id.slice(0, 27)}…` : s.session_id, title: s.session_id })),
        el("td", { class: "num", text: String(s.requests) }),
        el("td", { class: "num", text: bytes(s.sent_bytes) }),
        el("td", { class: "num", text: bytes(s.body_bytes) }),
        el("td", { class: "num", text: percent(s.saved_percent) }),
      ),
    );
    body.replaceChildren(...rows);
    $("relay-sessions").closest(".table-wrap").hidden = rows.length === 0;
  }

  function showRelayJob(job) {
    const steps = $("relay-steps");
    steps.hidden = job.steps.length === 0;
    steps.replaceChildren(...job.steps.map((s, i) => el("li", { text: s, "data-last": String(i === job.steps.length - 1) })));
    const status = $("relay-setup-status");
    status.className = "form-status";
    const token = $("relay-token");
    token.removeAttribute("aria-invalid");
    $("relay-account").removeAttribute("aria-invalid");
    if (job.state === "running") {
      status.textContent = "Deploying…";
    } else if (job.state === "done") {
      const detail = job.result && job.result.detail ? job.result.detail : "";
      const extra = detail ? ` ${detail[0].toUpperCase()}${detail.slice(1)}.`.replace(/\.\.$/, ".") : "";
      status.textContent = job.message + extra;
      if (!job.result || job.result.reachable !== false) status.classList.add("ok");
    } else {
      status.textContent = job.message;
      status.classList.add("error");
      status.setAttribute("role", "alert");
      if (job.error_kind === "invalid_token" || job.error_kind === "missing_permission") token.setAttribute("aria-invalid", "true");
    }
    $("relay-deploy").disabled = job.state === "running";
  }

  async function watchRelayJob() {
    clearTimeout(relayTimer);
    if (!relayJobId) return;
    try {
      const job = await api("GET", `/api/relay/setup/${encodeURIComponent(relayJobId)}`);
      showRelayJob(job);
      if (job.state === "running") {
        relayTimer = setTimeout(watchRelayJob, 1000);
        return;
      }
      if (job.state === "done") toast("Relay on.");
      relayJobId = null;
      poll();
    } catch (error) {
      if (error.status === 404) {
        relayJobId = null;
        $("relay-deploy").disabled = false;
        return;
      }
      relayTimer = setTimeout(watchRelayJob, 3000);
    }
  }

  $("relay-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const status = $("relay-setup-status");
    status.className = "form-status";
    status.removeAttribute("role");
    const body = {
      api_token: form.api_token.value,
      account_id: form.account_id.value.trim(),
      worker_name: form.worker_name.value.trim(),
      storage: form.storage.value,
      transport: form.transport.value,
    };
    form.api_token.value = ""; // used once: it leaves the page with this request
    if (!body.api_token.trim() || !body.account_id) {
      status.textContent = !body.api_token.trim() ? "Paste a Cloudflare API token." : "Enter your Cloudflare account ID.";
      status.classList.add("error");
      (body.api_token.trim() ? form.account_id : form.api_token).focus();
      return;
    }
    $("relay-deploy").disabled = true;
    status.textContent = "Starting…";
    try {
      const job = await api("POST", "/api/relay/setup", body);
      relayJobId = job.id;
      showRelayJob(job);
      relayTimer = setTimeout(watchRelayJob, 800);
    } catch (error) {
      const problems = (error.data && error.data.problems) || {};
      status.textContent = Object.values(problems).join("; ") || error.message;
      status.classList.add("error");
      $("relay-deploy").disabled = false;
    }
  });

  $("relay-check").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    $("relay-probe").textContent = "asking the Worker…";
    try {
      await api("POST", "/api/relay/check");
    } catch (error) {
      toast(error.message, "error");
    } finally {
      button.disabled = false;
      poll();
    }
  });

  $("relay-forget-sessions").addEventListener("click", async (event) => {
    const button = event.currentTarget; // null once the event is over, after the dialog
    const ok = await confirmDialog(
      "Delete what the Worker keeps?",
      "The Worker deletes every session body it stores (prompts included). Each session's next request uploads its whole body again.",
      "Delete",
    );
    if (!ok) return;
    const status = $("relay-forget-status");
    status.className = "form-status";
    button.disabled = true;
    try {
      const result = await api("POST", "/api/relay/forget");
      status.textContent = `Deleted ${result.forgotten} ${result.storage === "kv" ? "stored lanes" : "sessions"}; the Worker keeps nothing now.`;
      status.classList.add("ok");
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("error");
    } finally {
      button.disabled = false;
    }
  });

  $("relay-disable").addEventListener("click", async () => {
    const forget = $("relay-forget").checked;
    const state = H.state();
    const enabled = state && state.relay && state.relay.enabled;
    const ok = await confirmDialog(
      enabled ? "Turn the relay off?" : "Forget the relay?",
      forget
        ? "Requests go directly to the providers, and Headway forgets the Worker's URL and deletes its secret from your keychain. The Worker stays in your Cloudflare account; delete it in the dashboard if you no longer want it."
        : "Requests go directly to the providers. The Worker and its secret stay; the “Use the relay” switch below turns it back on.",
      forget ? "Turn off and forget" : "Turn off",
    );
    if (!ok) return;
    const status = $("relay-disable-status");
    status.className = "form-status";
    try {
      await api("POST", "/api/relay/disable", { forget });
      status.textContent = forget ? "Relay off; its URL and secret are forgotten." : "Relay off.";
      status.classList.add("ok");
      poll();
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("error");
    }
  });

  H.onState((next) => renderRelay(next));
})();
