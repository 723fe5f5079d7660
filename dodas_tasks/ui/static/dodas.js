// The Deployments pages' script: keep the live part fresh, and send the actions (scale, undeploy) as JSON POSTs
// with the X-DODAS-UI header the server requires (CSRF). Everything shown comes escaped from the server.
"use strict";

const REFRESH_MS = 3000;
const ACTION_HEADERS = { "Content-Type": "application/json", "X-DODAS-UI": "1" };

// The element with data-live names the URL of the page's live parts; each [data-live-part] of the answer replaces
// the page's part of the same name (forms and anything else stay as they are).
function refreshLive() {
  const live = document.querySelector("[data-live]");
  if (!live || document.hidden) return Promise.resolve();
  return fetch(live.dataset.live, { credentials: "same-origin", headers: { "X-DODAS-UI": "1" } })
    .then((answer) => (answer.ok ? answer.text() : Promise.reject(answer.status)))
    .then((html) => {
      const fresh = document.createElement("template");
      fresh.innerHTML = html;
      fresh.content.querySelectorAll("[data-live-part]").forEach((part) => {
        const shown = live.querySelector(`[data-live-part="${part.dataset.livePart}"]`);
        if (shown) shown.innerHTML = part.innerHTML;
      });
      live.classList.remove("stale");
    })
    .catch(() => live.classList.add("stale"));
}

function say(text, ok) {
  const result = document.getElementById("action-result");
  result.textContent = text;
  result.className = "result " + (ok ? "ok" : "failed");
}

function act(url, body) {
  return fetch(url, { method: "POST", credentials: "same-origin", headers: ACTION_HEADERS, body: JSON.stringify(body) })
    .then((answer) => answer.json().then((reply) => {
      say(answer.ok ? reply.message : (reply.message || answer.statusText), answer.ok);
      return answer.ok;
    }))
    .catch((problem) => { say("The request did not reach the service: " + problem, false); return false; })
    .finally(refreshLive);
}

function setUpScale(actions) {
  const form = document.getElementById("scale-form");
  if (!form) return;
  const group = document.getElementById("scale-group");
  const count = document.getElementById("scale-count");
  const desired = () => Number(group.selectedOptions[0].dataset.desired);
  const checked = () => Array.from(form.querySelectorAll("label.removal"))
    .filter((l) => l.dataset.group === group.value && l.querySelector("input").checked)
    .map((l) => l.querySelector("input").value);
  const showGroup = () => {
    let shown = 0;
    form.querySelectorAll("label.removal").forEach((label) => {
      const mine = label.dataset.group === group.value;
      label.hidden = !mine;
      if (!mine) label.querySelector("input").checked = false;
      shown += mine ? 1 : 0;
    });
    document.getElementById("no-removal").hidden = shown > 0;
    count.value = desired();
  };
  group.addEventListener("change", showGroup);
  form.addEventListener("change", (event) => {
    if (event.target.name === "removal") count.value = Math.max(0, desired() - checked().length);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { group: group.value, count: Number(count.value), removal_list: checked() };
    act(actions.dataset.scaleUrl, body).then((ok) => {
      if (ok) group.selectedOptions[0].dataset.desired = String(body.count);
    });
  });
  showGroup();
}

// Asked on the page itself: Airflow's frame (sandboxed without allow-modals) silently blocks window.confirm.
function setUpUndeploy(actions) {
  const button = document.getElementById("undeploy-button");
  const confirmation = document.getElementById("undeploy-confirm");
  const ask = (asking) => { confirmation.hidden = !asking; button.hidden = asking; };
  button.addEventListener("click", () => ask(true));
  document.getElementById("undeploy-no").addEventListener("click", () => ask(false));
  document.getElementById("undeploy-yes").addEventListener("click", () => {
    ask(false);
    act(actions.dataset.undeployUrl, {});
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("select.autosubmit").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
    select.form.querySelectorAll("button[type=submit]").forEach((button) => { button.hidden = true; });
  });
  const actions = document.getElementById("actions");
  if (actions) {
    setUpScale(actions);
    setUpUndeploy(actions);
  }
  if (document.querySelector("[data-live]")) window.setInterval(refreshLive, REFRESH_MS);
});
