// drpilot console: places what the server drew (already escaped) as the live feed sends it,
// and sends the buttons' and forms' requests to the JSON API with the X-Drpilot-Action header.
// The server decides everything; this only shows and asks. No inline script, nothing fetched
// from anywhere but the console itself.
"use strict";

const said = (text) => { const p = document.getElementById("said"); if (p) p.textContent = text; };

async function act(path, body) {
  const answer = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Drpilot-Action": "1"},
    body: JSON.stringify(body || {}),
  });
  const data = await answer.json().catch(() => ({error: `HTTP ${answer.status}`}));
  said(data.error ? `refused: ${data.error}` : (data.message || `started ${data.run_id}${data.attached ? " (attached)" : ""}`));
  // A started failover or failback opens its run page; a drill's runs show on the board as it claims the runbook.
  if (!data.error && data.run_id && !path.startsWith("/api/runs/") && !path.endsWith("/drill")) {
    window.location.assign(`/runs/${encodeURIComponent(data.run_id)}`);
  }
  return data;
}

function showButtons(progress) {
  const actions = document.getElementById("actions");
  if (!actions || !progress) return;
  const running = progress.state === "running" && !progress.aborting;
  const me = document.body.dataset.me;
  // A block's approval (its message in waiting_cause) waits even when the run's own was given.
  const approval = running && progress.waiting_for === "approval" && (!progress.approved_by || !!progress.waiting_cause);
  const mine = approval && !progress.starter_may_approve && progress.requested_by === me;
  const show = {
    approve: approval && !mine,
    pause: running && !progress.paused,
    resume: running && (progress.paused || progress.waiting_for === "resume" || progress.waiting_for === "drift"),
  };
  for (const button of actions.querySelectorAll("button[data-do]")) button.hidden = !show[button.dataset.do];
  actions.querySelector("form.abort").hidden = !running;
  document.getElementById("four-eyes").hidden = !mine;
}

function listen() {
  const feed = document.body.dataset.feed;
  if (!feed) return;
  const source = new EventSource(feed);
  source.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.error) { said(data.error); return; }
    if (data.html !== undefined) document.getElementById("live").innerHTML = data.html;
    if (data.report) document.getElementById("report").innerHTML = data.report;
    showButtons(data.progress);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  listen();
  const actions = document.getElementById("actions");
  if (actions) {
    const run = actions.dataset.run;
    for (const button of actions.querySelectorAll("button[data-do]")) {
      button.addEventListener("click", () => act(`/api/runs/${encodeURIComponent(run)}/${button.dataset.do}`));
    }
    actions.querySelector("form.abort").addEventListener("submit", (event) => {
      event.preventDefault();
      act(`/api/runs/${encodeURIComponent(run)}/abort`, {confirm: event.target.confirm.value});
    });
  }
  for (const form of document.querySelectorAll("form.start")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = {confirm: form.confirm.value};
      if (form.dataset.action === "failback") body.to = form.to.value; else body.from = form.from.value;
      if (form.dataset.action === "drill") body.mode = form.mode.value;
      act(`/api/runbooks/${encodeURIComponent(form.dataset.runbook)}/${form.dataset.action}`, body);
    });
  }
});
