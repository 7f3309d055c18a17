// Nightshift UI: live fragments, the run's event stream, confirmations and the bell.
// Everything user-provided is inserted with textContent, never as HTML.
"use strict";

// Swaps server-rendered fragments (tables, run status) in place, only when they changed, and
// gives focus back to the element that had it.
function live(el) {
  const every = Number(el.dataset.every || 2000);
  let last = el.innerHTML;
  async function tick() {
    try {
      const res = await fetch(el.dataset.live, { headers: { Accept: "text/html" } });
      if (res.ok) {
        const html = await res.text();
        if (html !== last) {
          const focused = document.activeElement && el.contains(document.activeElement) ? document.activeElement.id : null;
          el.innerHTML = html;
          last = html;
          if (focused) document.getElementById(focused)?.focus();
          el.dispatchEvent(new CustomEvent("swapped", { bubbles: true }));
        }
      }
    } catch (_) { /* the server may restart: try again on the next tick */ }
    timer = setTimeout(tick, document.hidden ? every * 4 : every);
  }
  let timer = setTimeout(tick, every);
  // Asked to look now, e.g. when the run's stream says it ended.
  el.addEventListener("refresh", () => { clearTimeout(timer); timer = setTimeout(tick, 0); });
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  node.textContent = value;
  return node;
}

function collapsed(summary, body) {
  const details = document.createElement("details");
  details.appendChild(text("summary", summary));
  details.appendChild(text("pre", body));
  return details;
}

// One run event as a log line. Tool calls and results are collapsed; phases stand out.
function renderEvent(ev) {
  const li = document.createElement("li");
  li.className = "k-" + ev.kind;
  li.dataset.seq = ev.seq;
  const at = new Date(ev.at).toLocaleTimeString();
  const data = ev.data || {};
  if (ev.kind === "agent" && (data.type === "tool_call" || data.type === "tool_result")) {
    const label = data.type === "tool_call" ? "tool call: " : "tool result: ";
    const body = data.type === "tool_call" ? JSON.stringify(data.input ?? data, null, 2) : String(data.output ?? "");
    li.classList.add("tool");
    li.appendChild(collapsed(`${at} ${label}${ev.message.split("\n")[0].slice(0, 120)}`, body));
  } else if (ev.kind === "check" && typeof data.output === "string" && data.output.trim()) {
    li.appendChild(collapsed(`${at} ${ev.message}`, data.output));
  } else if (ev.kind === "phase") {
    li.textContent = `${at} ▶ ${ev.message}`;
  } else {
    li.textContent = `${at} ${ev.message}`;
  }
  return li;
}

// Follows a run: the SSE endpoint sends the history first, then new events, then `end`.
function follow(log) {
  let source = null;
  function connect(url) {
    if (source) source.close();
    log.replaceChildren();
    source = new EventSource(url);
    source.addEventListener("run_event", (e) => {
      const ev = JSON.parse(e.data);
      if (log.querySelector(`li[data-seq="${ev.seq}"]`)) return;
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.appendChild(renderEvent(ev));
      if (atBottom) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", () => {
      source.close();
      log.dataset.ended = "true";
      document.getElementById("live")?.dispatchEvent(new Event("refresh"));
      document.getElementById("result")?.dispatchEvent(new Event("refresh"));
    });
  }
  connect(log.dataset.stream);
  // Screen readers hear status changes once, not every refresh of the fragment.
  let lastStatus = document.querySelector("#live [data-status]")?.dataset.status;
  document.getElementById("live")?.addEventListener("swapped", () => {
    const node = document.querySelector("#live [data-status]");
    const announce = document.getElementById("announce");
    if (node && announce && node.dataset.status !== lastStatus) {
      lastStatus = node.dataset.status;
      announce.textContent = `Run ${node.dataset.run} ${lastStatus}`;
    }
  });
  // A retry elsewhere makes a new latest run: follow it unless a run was chosen explicitly.
  const liveEl = document.getElementById("live");
  liveEl?.addEventListener("swapped", () => {
    const run = liveEl.querySelector("[data-run]")?.dataset.run;
    if (!liveEl.dataset.fixedRun && run && run !== log.dataset.run) {
      log.dataset.run = run;
      log.dataset.ended = "";
      document.getElementById("log-run").textContent = run;
      connect(log.dataset.stream.replace(/\/runs\/\d+\/stream$/, `/runs/${run}/stream`));
    }
  });
}

// Keeps the bell's unread count current on every page.
function bell() {
  const count = document.getElementById("bell-count");
  const link = document.getElementById("bell");
  const project = document.body.dataset.project;
  if (!count || !project) return;
  async function tick() {
    try {
      const res = await fetch(`/api/v1/projects/${encodeURIComponent(project)}/notifications?unread=true&limit=1`);
      if (res.ok) {
        const n = String((await res.json()).unread);
        if (count.textContent !== n) {
          count.textContent = n;
          count.dataset.count = n;
          link.setAttribute("aria-label", `Notifications, ${n} unread`);
        }
      }
    } catch (_) { /* try again later */ }
    setTimeout(tick, 3000);
  }
  setTimeout(tick, 3000);
}

// Forms that cancel or retry ask first (keyboard users get the browser's own dialog).
document.addEventListener("submit", (e) => {
  const message = e.target.dataset?.confirm;
  if (message && !window.confirm(message)) e.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  const log = document.getElementById("log");
  if (log) follow(log);
  bell();
});
