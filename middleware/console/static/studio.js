/* silobridge console: the mapping studio (loaded before app.js, whose helpers it calls).
 * Link a source field to a target field by dragging it onto the target, or by choosing it and
 * then "Link to ..." (buttons: the keyboard path). Each new link can get transforms, a value
 * map, a cross-reference lookup and a condition, written into the YAML by the server's
 * round-trip writer. Preview runs on a typed sample or on one of the route's dead letters. */
"use strict";

function parseLoose(text) {
  try { return JSON.parse(text); } catch (_) { return text; }
}

function linkEditor(link, transforms, onDone) {
  const steps = [...(link.transform || [])];
  const stepList = el("ul", { "aria-label": "Transform steps" });
  const stepText = (s) => (typeof s === "string" ? s : JSON.stringify(s));
  function drawSteps() {
    stepList.replaceChildren(...steps.map((s, i) => el("li", {}, stepText(s), " ",
      el("button", { type: "button", class: "secondary", on: { click: () => { steps.splice(i, 1); drawSteps(); } } }, `Remove step ${stepText(s)}`))));
  }
  drawSteps();
  const pick = el("select", { id: "lk-transform" }, transforms.map((t) => el("option", { value: t.name }, t.name)));
  const arg = el("input", { id: "lk-arg" });
  const hint = el("span", { class: "muted", id: "lk-hint" });
  function describe() {
    const t = transforms.find((x) => x.name === pick.value);
    hint.textContent = t ? `${t.summary} Example: ${t.example}` : "";
    arg.disabled = !(t && t.argument);
  }
  pick.addEventListener("change", describe);
  describe();
  const mapText = el("textarea", { id: "lk-map", class: "short" },
    Object.entries(link.map || {}).map(([k, v]) => `${k} = ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n"));
  const xref = el("input", { id: "lk-xref", placeholder: "crm.customer -> erp.account", value: (link.lookup && link.lookup.xref) || "" });
  const missing = el("select", { id: "lk-missing" }, ["fail", "retry", "default", "passthrough"].map((m) =>
    el("option", { value: m, selected: !!link.lookup && link.lookup.on_missing === m }, m)));
  const when = el("input", { id: "lk-when", placeholder: "source.tier == 'gold'", value: link.when || "" });
  const otherwise = el("input", { id: "lk-else", value: link.else === undefined || link.else === null ? "" : String(link.else) });
  const section = el("section", { "aria-labelledby": "lk-title", class: "link-editor", tabindex: "-1" },
    el("h3", { id: "lk-title" }, `Link ${link.source} → ${link.target}`),
    el("fieldset", {}, el("legend", {}, "Transforms, in order"), stepList,
      el("label", { for: "lk-transform" }, "Transform"), pick,
      el("label", { for: "lk-arg" }, "Argument"), arg,
      el("button", { type: "button", class: "secondary", on: { click: () => {
        const t = transforms.find((x) => x.name === pick.value);
        if (t.argument && !arg.value) { fail(`${t.name} needs an argument, e.g. ${t.example}`); return; }
        steps.push(t.argument ? { [t.name]: parseLoose(arg.value) } : t.name);
        arg.value = ""; drawSteps();
      } } }, "Add step"), el("p", {}, hint)),
    el("fieldset", {}, el("legend", {}, "Value map"),
      el("label", { for: "lk-map" }, "One per line: source value = target value"), mapText),
    el("fieldset", {}, el("legend", {}, "Cross-reference lookup"),
      el("label", { for: "lk-xref" }, "Link direction"), xref,
      el("label", { for: "lk-missing" }, "On a miss"), missing),
    el("fieldset", {}, el("legend", {}, "Condition"),
      el("label", { for: "lk-when" }, "Only when (CEL)"), when,
      el("label", { for: "lk-else" }, "Otherwise the value"), otherwise),
    el("button", { type: "button", id: "lk-apply", on: { click: () => {
      const map = {};
      for (const line of mapText.value.split("\n")) {
        if (!line.trim()) continue;
        const at = line.indexOf("=");
        if (at < 0) { fail(`Value map line "${line}" has no "=": write source = target.`); return; }
        map[line.slice(0, at).trim()] = parseLoose(line.slice(at + 1).trim());
      }
      link.transform = steps;
      link.map = map;
      if (xref.value.trim()) { link.lookup = { xref: xref.value.trim(), on_missing: missing.value }; delete link.remove_lookup; }
      else { delete link.lookup; link.remove_lookup = true; }
      link.when = when.value.trim();
      if (link.when) link.else = otherwise.value === "" ? null : parseLoose(otherwise.value); else delete link.else;
      onDone();
    } } }, "Apply to link"));
  return section;
}

async function studio(page, routeName) {
  const routes = (await api("GET", "/api/v1/routes")).routes.map((r) => r.route);
  const chosen = routeName && routes.includes(routeName) ? routeName : routes[0];
  const select = el("select", { id: "st-route" }, routes.map((r) => el("option", { value: r, selected: r === chosen }, r)));
  select.addEventListener("change", () => { location.hash = `#/mapping/${encodeURIComponent(select.value)}`; });
  page.append(el("h1", {}, "Mapping studio"), el("div", { class: "toolbar" }, el("label", { for: "st-route" }, "Route"), select));
  if (!chosen) return;
  const base = `/api/v1/routes/${encodeURIComponent(chosen)}/mapping`;
  let data;
  try { data = await api("GET", base); } catch (error) { fail(error.message); return; }
  const links = [];
  let picked = null;
  const pending = el("ul", { "aria-label": "New links" });
  const editorHolder = el("div", {});
  const output = el("div", { "aria-live": "polite" });
  const describeLink = (l) => {
    const extra = [];
    if (l.transform && l.transform.length) extra.push(`${l.transform.length} transform(s)`);
    if (l.map && Object.keys(l.map).length) extra.push("value map");
    if (l.lookup) extra.push(`lookup ${l.lookup.xref}`);
    if (l.when) extra.push(`when ${l.when}`);
    return `${l.source} → ${l.target}${extra.length ? ` (${extra.join(", ")})` : ""}`;
  };
  function drawLinks() {
    pending.replaceChildren(...links.map((l, i) => el("li", {}, describeLink(l), " ",
      el("button", { type: "button", class: "secondary", on: { click: () => edit(l) } }, `Details of ${l.target}`), " ",
      el("button", { type: "button", class: "secondary", on: { click: () => { links.splice(i, 1); drawLinks(); editorHolder.replaceChildren(); } } }, `Remove link to ${l.target}`))));
  }
  function edit(l) {
    const current = data.fields[l.target];
    if (current && typeof current === "object" && !l.seen) {  // start from the rule's own keys
      for (const key of ["transform", "map", "lookup", "when", "else"]) {
        if (l[key] === undefined && current[key] !== undefined) l[key] = current[key];
      }
    }
    l.seen = true;
    const editor = linkEditor(l, data.transforms, () => {
      drawLinks(); editorHolder.replaceChildren();
      say(`Link to ${l.target} updated. Save links to write it into the YAML.`);
    });
    editorHolder.replaceChildren(editor);
    editor.focus();
  }
  function pick(button, field) {
    for (const other of page.querySelectorAll("[data-source]")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    picked = field;
    say(`Source ${field} chosen: now choose the target field.`);
  }
  function link(target, source) {
    const from = source || picked;
    if (!from) { fail("Choose a source field first (or drag it onto a target field)."); return; }
    const existing = links.findIndex((l) => l.target === target);
    if (existing >= 0) links.splice(existing, 1);
    links.push({ target, source: from });
    drawLinks();
    say(`Linked ${from} to ${target}. Add details or save to write it into the YAML.`);
  }
  const rule = (name) => {
    const r = data.fields[name];
    if (r === undefined) return "unmapped";
    if (typeof r === "string") return r;
    const parts = [r.from ? [].concat(r.from).join(" + ") : (r.expr ? `expr ${r.expr}` : JSON.stringify(r))];
    if (r.transform) parts.push(r.transform.map((s) => (typeof s === "string" ? s : JSON.stringify(s))).join(" | "));
    if (r.map) parts.push("value map");
    if (r.lookup) parts.push(`lookup ${r.lookup.xref}`);
    if (r.when) parts.push(`when ${r.when}`);
    return parts.join(", ");
  };
  const sourceItem = (f) => {
    const button = el("button", { type: "button", class: "secondary", draggable: "true", "data-source": f, "aria-pressed": "false", on: {
      click: (e) => pick(e.currentTarget, f),
      dragstart: (e) => { e.dataTransfer.setData("text/plain", f); e.dataTransfer.effectAllowed = "link"; },
    } }, f);
    return el("li", {}, button);
  };
  const targetItem = (f) => el("li", { class: "drop", "data-target": f, on: {
    dragover: (e) => { e.preventDefault(); e.currentTarget.classList.add("over"); },
    dragleave: (e) => e.currentTarget.classList.remove("over"),
    drop: (e) => { e.preventDefault(); e.currentTarget.classList.remove("over"); link(f, e.dataTransfer.getData("text/plain")); },
  } }, el("button", { type: "button", class: "secondary", on: { click: () => link(f) } }, `Link to ${f}`), ` (now: ${rule(f)})`);
  page.append(
    el("p", { class: "muted" }, "Drag a source field onto a target field, or choose a source field and then \"Link to\" a target field."),
    el("div", { class: "studio" },
      el("section", { "aria-labelledby": "st-src" }, el("h2", { id: "st-src" }, "Source fields"), el("ul", {}, data.source_fields.map(sourceItem))),
      el("section", { "aria-labelledby": "st-tgt" }, el("h2", { id: "st-tgt" }, "Target fields"), el("ul", {}, data.target_fields.map(targetItem)))),
    el("h2", {}, "New links"), pending, editorHolder,
    el("div", { class: "toolbar" },
      el("button", { type: "button", id: "st-save", on: { click: async () => {
        if (!links.length) { fail("Link at least one field first."); return; }
        try {
          await api("PUT", base, { links: links.map(({ seen, ...rest }) => rest) });
          await route();
          say(`Saved ${links.length} link(s); the daemon reloads the mapping.`);
        } catch (error) { fail(error.message); }
      } } }, "Save links"),
      el("button", { type: "button", class: "secondary", id: "st-test", on: { click: async () => {
        try {
          const answer = await api("POST", `${base}/test`, { yaml: yamlArea.value });
          if (answer.problems) { output.replaceChildren(el("pre", {}, answer.problems.map((p) => p.text).join("\n"))); return; }
          output.replaceChildren(table("Test cases", ["Case", "Result", "Difference"], answer.results.map((r) =>
            el("tr", {}, el("th", { scope: "row" }, r.name), el("td", {}, r.ok ? "passed" : "FAILED"), el("td", {}, el("pre", {}, r.detail))))));
          say(`${answer.results.filter((r) => r.ok).length} of ${answer.results.length} test case(s) passed.`);
        } catch (error) { fail(error.message); }
      } } }, "Run tests")));

  const sample = el("textarea", { id: "st-sample", class: "short" }, "{}");
  async function preview() {
    let input;
    try { input = JSON.parse(sample.value); } catch (error) { fail(`The sample is not JSON: ${error.message}`); return; }
    try {
      const answer = await api("POST", `${base}/preview`, { yaml: yamlArea.value, input });
      output.replaceChildren(el("h3", {}, "Preview"), el("pre", {}, JSON.stringify(answer, null, 2)));
    } catch (error) { fail(error.message); }
  }
  const letters = el("select", { id: "st-dl" }, el("option", { value: "" }, "(choose a dead letter)"));
  page.append(el("h2", {}, "Preview"),
    el("div", { class: "toolbar" }, el("label", { for: "st-dl" }, "Sample from a dead letter of this route"), letters,
      el("button", { type: "button", class: "secondary", id: "st-use-dl", on: { click: async () => {
        if (!letters.value) { fail("Choose a dead letter first (the list shows this route's)."); return; }
        try {
          const d = await api("GET", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters/${encodeURIComponent(letters.value)}`);
          if (!d.event || d.body_view !== "full") { fail("Your role does not show this dead letter's body."); return; }
          sample.value = JSON.stringify(d.event.data, null, 2);
          await preview();
          say(`Previewed on dead letter ${d.id}.`);
        } catch (error) { fail(error.message); }
      } } }, "Preview on it")),
    el("label", { for: "st-sample" }, "Sample source payload (JSON)"), sample,
    el("button", { type: "button", class: "secondary", id: "st-preview", on: { click: preview } }, "Preview"),
    output);
  if (can("dlq:read")) {
    api("GET", `/api/v1/routes/${encodeURIComponent(chosen)}/dead-letters?limit=50`).then((found) => {
      for (const d of found.items) letters.append(el("option", { value: d.id }, `${d.id}: ${d.reason}`));
    }).catch(() => { /* the typed sample still works */ });
  }
  const yamlArea = el("textarea", { id: "st-yaml" }, data.yaml);
  page.append(el("h2", {}, "YAML"), el("label", { for: "st-yaml" }, `Edit ${data.file}`), yamlArea,
    el("button", { type: "button", on: { click: async () => {
      try {
        await api("PUT", base, { yaml: yamlArea.value });
        say("Saved; the daemon reloads the mapping.");
      } catch (error) { fail(error.message); }
    } } }, "Check and save YAML"));
  if (data.problems.length) fail(data.problems.map((p) => p.text).join("\n"));
}
