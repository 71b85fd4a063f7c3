/* silobridge console: the route detail and errors pages (loaded before app.js, whose helpers
 * el, api, table, say, fail, can, fmtAge and fmtNum they use when called).
 * Every failure links to its dead letter (#/dead-letters/ROUTE/ID opens it). */
"use strict";

function deadLetterLink(route, id) {
  return el("a", { href: `#/dead-letters/${encodeURIComponent(route)}/${encodeURIComponent(id)}` }, id);
}

function failureRows(items, withRoute) {
  return items.map((e) => el("tr", {},
    el("td", {}, e.failed_at || "-"),
    withRoute ? el("td", {}, el("a", { href: `#/route/${encodeURIComponent(e.route)}` }, e.route)) : null,
    el("th", { scope: "row" }, deadLetterLink(e.route, e.id)),
    el("td", {}, e.type), el("td", {}, e.subject || "-"), el("td", {}, e.stage || "-"),
    el("td", {}, e.reason), el("td", {}, e.error || "-"), el("td", { class: "num" }, e.attempts)));
}

async function routeDetail(page, routeName) {
  if (!routeName) { location.hash = "#/overview"; return; }
  const base = `/api/v1/routes/${encodeURIComponent(routeName)}`;
  const r = await api("GET", base);
  const q = r.queues || {};
  const facts = [
    ["Bound to", r.bind.join(", ")], ["Target", r.target],
    ["Reverse route", r.reverse || "-"],
    ["Waiting / retrying / dead letters", `${fmtNum(q.ready)} / ${fmtNum(q.retry)} / ${fmtNum(q.dlq)}`],
    ["Oldest dead letter", fmtAge(q.dlq_age)], ["Sync lag p95", fmtAge(r.lag_p95)],
    ["In flight / consumers", `${fmtNum(r.in_flight)} / ${fmtNum(r.consumers)}`],
  ];
  page.append(el("h1", {}, `Route ${routeName}`),
    el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("p", {},
      el("a", { href: `#/dead-letters/${encodeURIComponent(routeName)}` }, "Dead letters of this route"), " · ",
      el("a", { href: `#/errors/${encodeURIComponent(routeName)}` }, "Search its failures")));

  page.append(el("h2", {}, "Retry tiers"),
    el("p", { class: "muted" }, `A failure waits in the next tier, then is tried again; after the last tier it becomes a dead letter. The broker also gives up after ${r.retry.delivery_limit} deliveries.`),
    table("Retry tiers", ["Tier", "Delay", "Waiting now"], r.retry.tiers.map((t) => el("tr", {},
      el("th", { scope: "row" }, `Tier ${t.tier}`), el("td", { class: "num" }, fmtAge(t.delay_seconds)),
      el("td", { class: "num" }, t.depth === null ? "unknown (broker away)" : String(t.depth))))));

  page.append(el("h2", {}, "Recent failures"));
  if (r.recent_failures === null) page.append(el("p", {}, "The broker cannot be reached: failures are unknown for now."));
  else if (!r.recent_failures.length) page.append(el("p", {}, "No dead letters: nothing has failed for good."));
  else page.append(table("Recent failures of this route", ["When", "Id", "Type", "Subject", "Stage", "Reason", "Error", "Attempts"],
    failureRows(r.recent_failures, false)));

  page.append(el("h2", {}, "Mapping in use"));
  if (!r.mapping) { page.append(el("p", {}, "None: the event's data goes to the target as it is.")); return; }
  page.append(el("p", {}, `File: ${r.mapping.file}`,
    can("mapping:read") ? [" · ", el("a", { href: `#/mapping/${encodeURIComponent(routeName)}` }, "Open in the mapping studio")] : null));
  if (r.mapping.rules) {
    page.append(table("Field rules", ["Target field", "Rule"], Object.entries(r.mapping.rules).map(([target, rule]) =>
      el("tr", {}, el("th", { scope: "row" }, target), el("td", {}, typeof rule === "string" ? rule : JSON.stringify(rule))))));
  }
}

async function errors(page, routeName) {
  const limit = 50;
  let offset = 0;
  const text = el("input", { id: "er-q", type: "search" });
  const route = el("select", { id: "er-route" }, el("option", { value: "" }, "All routes"));
  const stage = el("select", { id: "er-stage" }, el("option", { value: "" }, "Any stage"));
  const error = el("select", { id: "er-error" }, el("option", { value: "" }, "Any error class"));
  const holder = el("div", {});
  const form = el("form", { class: "toolbar", role: "search", "aria-label": "Search failures" },
    el("label", { for: "er-q" }, "Text"), text, el("label", { for: "er-route" }, "Route"), route,
    el("label", { for: "er-stage" }, "Stage"), stage, el("label", { for: "er-error" }, "Error class"), error,
    el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; load(); });
  page.append(el("h1", {}, "Errors"),
    el("p", { class: "muted" }, "Failures across your routes (their dead letters), newest first; each id opens its dead letter."),
    form, holder);
  let filled = false;

  function fill(select, values, chosen) {
    for (const value of values) select.append(el("option", { value, selected: value === chosen }, value));
  }

  async function load() {
    const query = new URLSearchParams({ limit, offset });
    for (const [name, input] of [["q", text], ["route", route], ["stage", stage], ["error", error]]) {
      if (input.value) query.set(name, input.value);
    }
    if (!filled && routeName) query.set("route", routeName);
    const data = await api("GET", `/api/v1/errors?${query}`);
    if (!filled) {
      fill(route, data.routes, routeName); fill(stage, data.stages); fill(error, data.error_classes);
      filled = true;
    }
    holder.replaceChildren(
      el("div", { class: "toolbar" },
        el("span", {}, `${data.total} failure(s); showing ${data.total ? offset + 1 : 0}-${offset + data.errors.length}`),
        el("button", { type: "button", class: "secondary", disabled: offset === 0, on: { click: () => { offset -= limit; load(); } } }, "Previous page"),
        el("button", { type: "button", class: "secondary", disabled: offset + limit >= data.total, on: { click: () => { offset += limit; load(); } } }, "Next page")),
      table("Recent errors", ["When", "Route", "Id", "Type", "Subject", "Stage", "Reason", "Error", "Attempts"],
        failureRows(data.errors, true)));
    say(`${data.total} failure(s) found.`);
  }
  await load();
}
