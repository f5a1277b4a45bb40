// Slipway dashboard: small progressive enhancements. Text from the server is
// always inserted with textContent, never as HTML.
"use strict";

function revealToggle() {
  const button = document.getElementById("reveal");
  if (!button) return;
  button.addEventListener("click", () => {
    const fields = document.querySelectorAll("#config-form textarea[name=value]");
    const masked = button.textContent.startsWith("Reveal");
    fields.forEach((f) => {
      if (f.closest(".config-row.new")) return;
      f.classList.toggle("masked", !masked);
    });
    button.textContent = masked ? "Hide values" : "Reveal values";
  });
}

function releaseProgress() {
  const box = document.getElementById("release-progress");
  if (!box) return;
  const deadline = Date.now() + 5 * 60 * 1000;
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      const release = await response.json();
      if (release.live) {
        box.textContent = `v${release.version} is live`;
        box.className = "progress ok";
        return;
      }
      if (release.status === "failed") {
        box.textContent = `v${release.version} failed: ${release.error || "see the app page"}`;
        box.className = "progress failed";
        return;
      }
      box.textContent = `Deploying v${release.version}… (${release.status})`;
    } catch (err) {
      box.textContent = "Waiting for the server…";
    }
    if (Date.now() < deadline) setTimeout(poll, 1000);
  };
  poll();
}

function buildLog() {
  const pre = document.getElementById("build-log");
  if (!pre || !pre.dataset.stream) return;
  const source = new EventSource(pre.dataset.stream);
  let first = true;
  source.addEventListener("line", (event) => {
    if (first) { pre.textContent = ""; first = false; }  // the stream replays from the start
    pre.textContent += event.data + "\n";
    pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    source.close();
    document.getElementById("build-status").textContent = event.data;
  });
}

function appLog() {
  const box = document.getElementById("app-log");
  if (!box) return;
  const maxLines = parseInt(box.dataset.maxLines, 10) || 1000;
  const follow = document.getElementById("log-follow");
  const filter = document.getElementById("log-filter");
  const state = document.getElementById("log-state");
  const matches = (text) => !filter.value || text.includes(filter.value);
  const source = new EventSource(box.dataset.stream);
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("line", (event) => {
    const line = document.createElement("div");
    line.textContent = event.data;
    if (!matches(event.data)) line.classList.add("hidden");
    box.appendChild(line);
    while (box.childElementCount > maxLines) box.firstElementChild.remove();
    if (follow.checked) box.scrollTop = box.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    state.textContent = `stream ended: ${event.data}`;
  });
  filter.addEventListener("input", () => {
    for (const line of box.children) line.classList.toggle("hidden", !matches(line.textContent));
  });
}

function revealUrl() {
  const button = document.getElementById("reveal-url");
  if (!button) return;
  const url = document.getElementById("capsule-url");
  button.addEventListener("click", () => {
    url.hidden = !url.hidden;
    button.textContent = url.hidden ? "Reveal URL" : "Hide URL";
  });
}

// While a capsule provisions, ask for its status until it settles, then reload so
// the page shows what an available (or failed) capsule offers.
function capsuleStatus() {
  const box = document.getElementById("capsule-status");
  if (!box || !box.dataset.url) return;
  const deadline = Date.now() + 10 * 60 * 1000;
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      const capsule = await response.json();
      box.textContent = capsule.status;
      if (capsule.status !== "provisioning") {
        window.location.reload();
        return;
      }
    } catch (err) {
      box.textContent = "provisioning (waiting for the server…)";
    }
    if (Date.now() < deadline) setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  revealToggle();
  revealUrl();
  capsuleStatus();
  releaseProgress();
  buildLog();
  appLog();
});
