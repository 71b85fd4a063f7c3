/* silobridge console: plain DOM, no framework, nothing from a CDN.
 * Every value from the API goes into the page as text (textContent), never as HTML.
 * Buttons a role may not use are not rendered; the API refuses them anyway (403). */
"use strict";

const state = { me: null, csrf: null, timer: null };
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function say(message) { $("#status").textContent = message; }
function fail(message) { $("#alert").textContent = message; }
function clearMessages() { say(""); fail(""); }
function can(permission) { return !!state.me && state.me.permissions.includes(permission); }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && path !== "/api/v1/login") { showLogin(); throw new Error("signed out"); }
  if (!response.ok) {
    throw new Error((data && data.error) || `the server answered ${response.status}; try again`);
  }
  return data;
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds >= 120) return `${Math.round(seconds / 60)}m`;
  return seconds < 10 ? `${seconds.toFixed(2)}s` : `${Math.round(seconds)}s`;
}
function fmtNum(value, digits) {
  if (value === null || value === undefined) return "-";
  return digits ? Number(value).toFixed(digits) : String(Math.round(value));
}

function table(caption, columns, rows) {
  return el("table", {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, rows));
}

/* ---- sign in / out ---------------------------------------------------------------------- */

function showLogin() {
  stopTimer();
  state.me = null; state.csrf = null;
  $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  const form = el("form", { class: "login", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title" }, "Sign in"),
    el("label", {}, "User name", el("input", { name: "name", autocomplete: "username", required: true })),
    el("label", {}, "Password",
      el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    try {
      const answer = await api("POST", "/api/v1/login",
        { name: form.elements.name.value, password: form.elements.password.value });
      state.csrf = answer.csrf_token;
      await loadMe();
      if (!location.hash || /^#\/(login|signin-error)/.test(location.hash)) location.hash = "#/overview";
      else route();
    } catch (error) { fail(error.message); }
  });
  $("#page").replaceChildren(form);
  const signinError = location.hash.match(/^#\/signin-error\/(.*)$/);
  if (signinError) fail(`Single sign-on failed: ${decodeURIComponent(signinError[1])}`);
  api("GET", "/api/v1/login").then((options) => {
    if (options.oidc) {
      form.append(el("p", { class: "or" }, "or"),
        el("a", { class: "button", id: "oidc-start", href: options.oidc.start }, `Sign in with ${options.oidc.label}`));
    }
  }).catch(() => { /* password sign-in still works */ });
  form.elements.name.focus();
}

async function loadMe() {
  state.me = await api("GET", "/api/v1/me");
  state.csrf = state.me.csrf_token || state.csrf;
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  $("#nav").hidden = false; $("#logout").hidden = false;
  for (const item of document.querySelectorAll("[data-needs]")) {
    item.hidden = !can(item.dataset.needs);
  }
}

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout", {}); } catch (_) { /* signed out either way */ }
  location.hash = "#/login";
  showLogin();
});

/* ---- pages ------------------------------------------------------------------------------ */

function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }

async function overview(page) {
  const holder = el("div", {});
  page.append(el("h1", {}, "Overview"),
    el("p", { class: "muted" }, "Every route, refreshed every 5 seconds."), holder);
  async function refresh() {
    try {
      const data = await api("GET", "/api/v1/routes");
      holder.replaceChildren(table("Routes",
        ["Route", "In/s", "Delivered/s", "Failed/s", "Lag p95", "Ready", "Retry", "Dead letters",
          "Oldest dead letter", "In flight", "Consumers"],
        data.routes.map((r) => {
          const q = r.queues || {};
          return el("tr", {},
            el("th", { scope: "row" }, el("a", { href: `#/route/${encodeURIComponent(r.route)}` }, r.route)),
            el("td", { class: "num" }, fmtNum(r.rate_in, 1)),
            el("td", { class: "num" }, fmtNum(r.delivered_rate, 1)),
            el("td", { class: "num" }, fmtNum(r.failed_rate, 1)),
            el("td", { class: "num" }, fmtAge(r.lag_p95)),
            el("td", { class: "num" }, fmtNum(q.ready)),
            el("td", { class: "num" }, fmtNum(q.retry)),
            el("td", { class: "num" }, q.dlq ? el("a", { href: `#/dead-letters/${encodeURIComponent(r.route)}`, "aria-label": `${q.dlq} dead letters of ${r.route}` }, fmtNum(q.dlq)) : fmtNum(q.dlq)),
            el("td", { class: "num" }, fmtAge(q.dlq_age)),
            el("td", { class: "num" }, fmtNum(r.in_flight)),
            el("td", { class: "num" }, fmtNum(r.consumers)));
        })));
    } catch (error) { fail(error.message); }
  }
  await refresh();
  state.timer = setInterval(refresh, 5000);
}

async function deadLetters(page, routeName, openId) {
  const routes = (await api("GET", "/api/v1/routes")).routes.map((r) => r.route);
  const chosen = routeName && routes.includes(routeName) ? routeName : routes[0];
  const select = el("select", { id: "dl-route" }, routes.map((r) =>
    el("option", { value: r, selected: r === chosen }, r)));
  select.addEventListener("change", () => { location.hash = `#/dead-letters/${encodeURIComponent(select.value)}`; });
  const filter = el("input", { id: "dl-reason", type: "search" });
  const list = el("div", {});
  const detail = el("section", { "aria-label": "Dead letter", tabindex: "-1" });
  let offset = 0;
  const limit = 50;
  page.append(el("h1", {}, "Dead letters"),
    el("div", { class: "toolbar" },
      el("label", { for: "dl-route" }, "Route"), select,
      el("label", { for: "dl-reason" }, "Reason contains"), filter,
      el("button", { type: "button", class: "secondary", on: { click: () => { offset = 0; load(); } } }, "Filter")),
    list, detail);
  if (!chosen) { list.textContent = "No route is visible to you."; return; }

  async function load() {
    clearMessagesKeepStatus();
    const query = new URLSearchParams({ limit, offset });
    if (filter.value) query.set("reason", filter.value);
    const data = await api("GET", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters?${query}`);
    const rows = data.items.map((d) => el("tr", {},
      can("dlq:replay") ? el("td", {}, el("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}` })) : null,
      el("th", { scope: "row" }, d.id),
      el("td", {}, d.type), el("td", {}, d.subject), el("td", {}, d.reason),
      el("td", { class: "num" }, d.attempts), el("td", { class: "num" }, fmtAge(d.age_seconds)),
      el("td", {}, el("button", { type: "button", class: "secondary", on: { click: () => show(d.id) } }, `Show ${d.id}`))));
    const columns = [...(can("dlq:replay") ? ["Select"] : []), "Id", "Type", "Subject", "Reason", "Attempts", "Age", "Actions"];
    const tools = el("div", { class: "toolbar" },
      el("span", {}, `${data.total} dead letter(s); showing ${data.total ? offset + 1 : 0}-${offset + data.items.length}`),
      el("button", { type: "button", class: "secondary", disabled: offset === 0, on: { click: () => { offset -= limit; load(); } } }, "Previous page"),
      el("button", { type: "button", class: "secondary", disabled: offset + limit >= data.total, on: { click: () => { offset += limit; load(); } } }, "Next page"));
    if (can("dlq:replay")) {
      tools.append(
        el("button", { type: "button", id: "replay-selected", on: { click: replaySelected } }, "Replay selected"),
        el("button", { type: "button", id: "replay-all", on: { click: () => replayAll(data.total) } }, "Replay all"));
    }
    if (can("dlq:purge")) {
      tools.append(el("button", { type: "button", class: "danger", id: "purge", on: { click: purge } }, "Purge"));
    }
    list.replaceChildren(tools, table(`Dead letters of ${chosen}`, columns, rows));
  }

  function clearMessagesKeepStatus() { fail(""); }

  async function replayIds(ids) {
    const progress = el("progress", { max: ids.length, value: 0, "aria-label": "Replay progress" });
    detail.replaceChildren(progress);
    let done = 0;
    for (let i = 0; i < ids.length; i += 25) {
      const answer = await api("POST", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters/replay`, { ids: ids.slice(i, i + 25) });
      done += answer.replayed;
      progress.value = Math.min(ids.length, i + 25);
      say(`Replaying: ${done} of ${ids.length}`);
    }
    say(`Replayed ${done} of ${ids.length} dead letter(s).`);
    detail.replaceChildren();
    await load();
  }

  async function replaySelected() {
    const ids = [...list.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    if (!ids.length) { fail("Select dead letters first (the boxes in the first column)."); return; }
    try { await replayIds(ids); } catch (error) { fail(error.message); }
  }

  async function replayAll(total) {
    if (!window.confirm(`Replay all ${total} dead letter(s) of ${chosen}?`)) return;
    try {
      const ids = [];
      for (let at = 0; at < total; at += 500) {
        const data = await api("GET", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters?limit=500&offset=${at}`);
        ids.push(...data.items.map((d) => d.id));
      }
      await replayIds(ids);
    } catch (error) { fail(error.message); }
  }

  async function purge() {
    const typed = window.prompt(`Purge deletes every dead letter of ${chosen} for good. Type the route name to confirm:`);
    if (typed === null) return;
    try {
      const answer = await api("POST", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters/purge`, { confirm: typed });
      say(`Purged ${answer.purged} dead letter(s).`);
      await load();
    } catch (error) { fail(error.message); }
  }

  async function show(id) {
    try {
      const d = await api("GET", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters/${encodeURIComponent(id)}`);
      const parts = [el("h2", {}, `Dead letter ${d.id}`),
        el("dl", {}, ["type", "subject", "reason", "stage", "error", "attempts", "replays", "failed_at"]
          .map((k) => [el("dt", {}, k), el("dd", {}, d[k] === null ? "-" : String(d[k]))]))];
      if (d.body_view === "none") parts.push(el("p", { class: "muted" }, "Your role does not show payload bodies."));
      else parts.push(el("h3", {}, d.body_view === "masked" ? "Event (values masked)" : "Event"),
        el("pre", {}, JSON.stringify(d.event, null, 2)));
      if (can("dlq:edit") && d.body_view === "full" && d.event) {
        const area = el("textarea", { id: "edit-event" }, JSON.stringify(d.event, null, 2));
        parts.push(el("label", { for: "edit-event" }, "Edit the event, then replay it"), area,
          el("button", { type: "button", on: { click: async () => {
            let event;
            try { event = JSON.parse(area.value); } catch (error) { fail(`The event is not JSON: ${error.message}`); return; }
            try {
              await api("POST", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters/${encodeURIComponent(id)}/edit-replay`, { event });
              say(`Replayed the edited ${id}.`);
              detail.replaceChildren();
              await load();
            } catch (error) { fail(error.message); }
          } } }, "Replay edited event"));
      }
      if (can("dlq:replay")) {
        parts.push(el("button", { type: "button", on: { click: () => replayIds([id]).catch((e) => fail(e.message)) } }, `Replay ${id}`));
      }
      detail.replaceChildren(...parts);
      detail.focus();
    } catch (error) { fail(error.message); }
  }

  await load();
  if (openId) await show(openId);
}

async function xref(page) {
  const ns = el("input", { id: "xr-ns", placeholder: "crm.customer" });
  const key = el("input", { id: "xr-key" });
  const holder = el("div", {});
  page.append(el("h1", {}, "Cross-references"),
    el("form", { class: "toolbar", on: { submit: (e) => { e.preventDefault(); search(); } } },
      el("label", { for: "xr-ns" }, "Namespace"), ns,
      el("label", { for: "xr-key" }, "Key starts with"), key,
      el("button", { type: "submit" }, "Search")), holder);
  if (can("xref:write")) {
    const fields = ["ns_a", "key_a", "ns_b", "key_b"].map((name) => el("input", { id: `fix-${name}`, name, required: true }));
    const form = el("form", { "aria-labelledby": "fix-title", on: { submit: async (e) => {
      e.preventDefault();
      const body = Object.fromEntries(fields.map((f) => [f.name, f.value]));
      try {
        const answer = await api("PUT", "/api/v1/xref", body);
        say(`Linked ${body.ns_a}:${body.key_a} to ${body.ns_b}:${body.key_b}; replaced ${answer.replaced.length} old link(s).`);
        await search();
      } catch (error) { fail(error.message); }
    } } }, el("h2", { id: "fix-title" }, "Fix a link"),
      fields.map((f) => el("label", { for: f.id }, f.name.replace("_", " "), f)),
      el("button", { type: "submit" }, "Save link"));
    page.append(form);
  }
  async function search() {
    const query = new URLSearchParams({ limit: 100 });
    if (ns.value) query.set("namespace", ns.value);
    if (key.value) query.set("key", key.value);
    try {
      const data = await api("GET", `/api/v1/xref?${query}`);
      holder.replaceChildren(table("Links", ["Namespace", "Key", "Namespace", "Key"],
        data.links.map((l) => el("tr", {}, el("td", {}, l.ns_a), el("td", {}, l.key_a),
          el("td", {}, l.ns_b), el("td", {}, l.key_b)))));
    } catch (error) { fail(error.message); }
  }
  await search();
}

async function audit(page) {
  let offset = 0;
  const holder = el("div", {});
  page.append(el("h1", {}, "Audit log"),
    el("p", {}, el("a", { href: "/api/v1/audit?format=ndjson&limit=10000", download: "audit.ndjson" }, "Export (NDJSON)")),
    holder);
  async function load() {
    const data = await api("GET", `/api/v1/audit?limit=50&offset=${offset}`);
    holder.replaceChildren(
      el("div", { class: "toolbar" },
        el("button", { type: "button", class: "secondary", disabled: offset === 0, on: { click: () => { offset -= 50; load(); } } }, "Newer"),
        el("button", { type: "button", class: "secondary", disabled: data.entries.length < 50, on: { click: () => { offset += 50; load(); } } }, "Older")),
      table("Audit records", ["When", "Who", "Action", "Target", "Before", "After"],
        data.entries.map((a) => el("tr", {},
          el("td", {}, new Date(a.at * 1000).toISOString()), el("td", {}, a.actor),
          el("th", { scope: "row" }, a.action), el("td", {}, a.target),
          el("td", {}, el("pre", {}, JSON.stringify(a.before, null, 1))),
          el("td", {}, el("pre", {}, JSON.stringify(a.after, null, 1)))))));
  }
  await load();
}

const PAGES = { overview, route: routeDetail, "dead-letters": deadLetters, errors, mapping: studio, xref, audit, users };

async function route() {
  stopTimer();
  clearMessages();
  if (!state.me) { showLogin(); return; }
  const [name, arg, arg2] = location.hash.replace(/^#\//, "").split("/");
  const render = PAGES[name] || overview;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name || "overview"}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = el("div", {});
  $("#page").replaceChildren(page);
  try { await render(page, arg && decodeURIComponent(arg), arg2 && decodeURIComponent(arg2)); } catch (error) { fail(error.message); }
  $("#main").focus();
}

window.addEventListener("hashchange", route);
(async () => {
  try { await loadMe(); } catch (_) { return; }
  route();
})();
