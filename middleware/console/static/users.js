/* silobridge console: the Users page (admin), loaded before app.js whose helpers it calls.
 * Add a user, change a role or route scope, issue an API token (shown once), remove a user;
 * every change goes through the API, which audits it and keeps the last admin. */
"use strict";

const ROLES = ["viewer", "operator", "integrator", "admin"];
const routeList = (text) => text.split(",").map((r) => r.trim()).filter((r) => r);

async function users(page) {
  const data = await api("GET", "/api/v1/users");
  const canWrite = can("users:write");
  const shown = el("div", { "aria-live": "polite" });
  page.append(el("h1", {}, "Users"),
    el("p", { class: "muted" }, "Change users here or with 'silobridge users'. Users named oidc:... come from single sign-on: the provider's claim sets their role at each sign-in."));
  const rows = data.users.map((u) => {
    const id = u.name.replace(/[^A-Za-z0-9_-]/g, "_");
    const role = el("select", { id: `role-${id}`, disabled: !canWrite },
      ROLES.map((r) => el("option", { value: r, selected: r === u.role }, r)));
    const scope = el("input", { id: `routes-${id}`, value: u.routes.join(", "), placeholder: "all routes", disabled: !canWrite });
    const actions = !canWrite ? [] : [
      el("button", { type: "button", class: "secondary", on: { click: async () => {
        try {
          await api("PUT", `/api/v1/users/${encodeURIComponent(u.name)}`, { role: role.value, routes: routeList(scope.value) });
          say(`Saved ${u.name}: ${role.value}, ${scope.value || "all routes"}.`);
        } catch (error) { fail(error.message); }
      } } }, `Save ${u.name}`), " ",
      el("button", { type: "button", class: "secondary", on: { click: async () => {
        const label = window.prompt(`What is the new API token of ${u.name} for?`, "automation");
        if (!label) return;
        try {
          const answer = await api("POST", `/api/v1/users/${encodeURIComponent(u.name)}/tokens`, { label });
          shown.replaceChildren(el("p", {}, `Token for ${u.name} (${label}), shown once: copy it now.`),
            el("pre", { id: "new-token" }, answer.token));
        } catch (error) { fail(error.message); }
      } } }, `New token for ${u.name}`), " ",
      el("button", { type: "button", class: "danger", on: { click: async () => {
        if (!window.confirm(`Remove ${u.name}? Their sessions and tokens end.`)) return;
        try {
          await api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}`);
          await route();
          say(`Removed ${u.name}.`);
        } catch (error) { fail(error.message); }
      } } }, `Remove ${u.name}`)];
    return el("tr", {}, el("th", { scope: "row" }, u.name),
      el("td", {}, el("label", { for: `role-${id}`, class: "visually-hidden" }, `Role of ${u.name}`), role),
      el("td", {}, el("label", { for: `routes-${id}`, class: "visually-hidden" }, `Routes of ${u.name}`), scope),
      el("td", {}, actions));
  });
  page.append(table("Users", ["Name", "Role", "Routes (comma-separated; empty: all)", "Actions"], rows), shown);
  if (!canWrite) return;
  const name = el("input", { id: "nu-name", name: "name", required: true, autocomplete: "off" });
  const role = el("select", { id: "nu-role" }, ROLES.map((r) => el("option", { value: r }, r)));
  const scope = el("input", { id: "nu-routes", placeholder: "all routes" });
  const password = el("input", { id: "nu-password", type: "password", autocomplete: "new-password", minlength: "12" });
  const form = el("form", { "aria-labelledby": "nu-title" }, el("h2", { id: "nu-title" }, "Add a user"),
    el("label", { for: "nu-name" }, "Name"), name, el("label", { for: "nu-role" }, "Role"), role,
    el("label", { for: "nu-routes" }, "Routes"), scope,
    el("label", { for: "nu-password" }, "Password (12 or more characters; empty: tokens only)"), password,
    el("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value, role: role.value, routes: routeList(scope.value) };
    if (password.value) body.password = password.value;
    try {
      await api("POST", "/api/v1/users", body);
      const added = name.value;
      await route();
      say(`Added ${added} (${body.role}).`);
    } catch (error) { fail(error.message); }
  });
  page.append(form);
}
