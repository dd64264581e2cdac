// The mapping studio page. Every change goes to the server, which edits the YAML (comments
// kept), compiles it with the loader, maps the chosen record with the engine and validates the
// payload with the Great Expectations suite: this script only shows what comes back.
"use strict";

(function () {
  const root = document.getElementById("studio");
  const BASE = root.dataset.base;
  const NAME = root.dataset.name;
  const API = `${BASE}/studio/api/mappings/${encodeURIComponent(NAME)}`;
  const $ = (id) => document.getElementById(id);
  const state = { yaml: "", sha: null, view: null, meta: null, ref: null, lastTarget: {} };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key === "text") node.textContent = value;
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function message(text, isError) {
    const box = $("messages");
    box.replaceChildren(el("div", { class: isError ? "message error" : "message", text }));
  }

  function busy(text) {
    $("status").textContent = text;
  }

  async function call(url, body, method) {
    const response = await fetch(url, {
      method: method || (body === undefined ? "GET" : "POST"),
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = { error: `${response.status} ${response.statusText}` };
    }
    if (!response.ok) {
      const error = new Error(data.error || data.detail || `HTTP ${response.status}`);
      error.data = data;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // --- records ---------------------------------------------------------------------------

  function fillRecords() {
    const kind = $("record-kind").value;
    const select = $("record");
    $("custom-record").hidden = kind !== "custom";
    select.hidden = kind === "custom";
    if (kind === "custom") {
      state.ref = null;
      return;
    }
    const items = (state.meta.records && state.meta.records[kind]) || [];
    select.replaceChildren(
      ...items.map((item, i) => el("option", { value: String(i), text: item.label }))
    );
    if (!items.length) {
      select.append(el("option", { value: "", text: "(none)" }));
      state.ref = null;
    } else {
      state.ref = items[0].ref;
    }
  }

  function recordRef() {
    if ($("record-kind").value === "custom") {
      return { kind: "custom", json: $("custom-record").value || "{}" };
    }
    const items = state.meta.records[$("record-kind").value] || [];
    const chosen = items[Number($("record").value)];
    return chosen ? chosen.ref : null;
  }

  // --- rendering -----------------------------------------------------------------------------

  function kvRows(table, rows, previous) {
    const body = table.tBodies[0];
    body.replaceChildren(
      ...rows.map((row) => {
        const changed = previous && previous[row.path] !== undefined && previous[row.path] !== row.value;
        const added = previous && previous[row.path] === undefined && Object.keys(previous).length;
        return el(
          "tr",
          { class: changed || added ? "changed" : "", "data-path": row.path },
          el("td", { text: row.path }),
          el("td", { class: "value", text: row.value })
        );
      })
    );
  }

  function problemLines(problems) {
    return new Set((problems || []).filter((p) => p.line).map((p) => p.line));
  }

  function rowHasProblem(line, nextLine, problems) {
    return (problems || []).some((p) => p.line && p.line >= line && (!nextLine || p.line < nextLine));
  }

  function input(cls, value, onChange, placeholder) {
    const node = el("input", { class: cls, value: value || "", placeholder: placeholder || "" });
    node.addEventListener("change", () => onChange(node.value));
    return node;
  }

  function transformSelect(value, onChange) {
    const select = el("select", { class: "f-transform" });
    const names = ["", ...state.meta.transforms];
    if (value && !names.includes(value)) names.push(value);
    for (const name of names) {
      select.append(el("option", { value: name, text: name || "(none)", selected: name === value }));
    }
    select.addEventListener("change", () => onChange(select.value));
    return select;
  }

  function fieldRow(field, nextLine, problems) {
    const set = (key, value, asYaml) =>
      edit({ op: "set", path: field.path, key, ...(asYaml ? { value_yaml: value } : { value }) });
    const fromCell =
      field.kind === "source"
        ? input("f-from", field.from, (v) => set("source", v), "path")
        : input("f-from", field.from, (v) => set(field.kind, v, true), field.kind);
    const transform = transformSelect(field.transform, (name) => {
      if (!name) edit({ op: "unset", path: field.path, key: "transform" });
      else set("transform", field.args ? `{name: ${name}, args: ${field.args}}` : name, true);
    });
    const args = input("f-args", field.args, (v) => {
      if (!field.transform) return message("Pick a transform first.", true);
      set("transform", v.trim() ? `{name: ${field.transform}, args: ${v}}` : field.transform, true);
    }, field.lookup ? "lookup table" : "args");
    const defaultInput = input("f-default", field.has_default ? field.default : "", (v) => {
      if (v.trim() === "") edit({ op: "unset", path: field.path, key: "default" });
      else set("default", v, true);
    }, "none");
    const when = input("f-when", field.when, (v) => {
      if (v.trim() === "") edit({ op: "unset", path: field.path, key: "when" });
      else set("when", v, true);
    }, "always");
    const kindLabel = field.kind && field.kind !== "source" ? ` (${field.kind})` : "";
    return el(
      "tr",
      {
        "data-target": field.target,
        class: rowHasProblem(field.line, nextLine, problems) ? "problem" : "",
      },
      el("td", {}, el("code", { text: field.target + (field.required ? " *" : "") }), kindLabel),
      el("td", {}, fromCell),
      el("td", {}, transform),
      el("td", {}, args),
      el("td", {}, defaultInput),
      el("td", {}, when),
      el("td", { class: "muted", text: field.line || "" })
    );
  }

  function renderView(view, problems) {
    const body = $("field-lines").tBodies[0];
    const fields = view ? view.fields : [];
    body.replaceChildren(
      ...fields.map((f, i) => fieldRow(f, fields[i + 1] && fields[i + 1].line, problems))
    );
    const rules = $("rules").tBodies[0];
    rules.replaceChildren(
      ...(view ? view.rules : []).map((rule, i, all) => {
        const set = (key, value, asYaml) =>
          edit({ op: "set", path: rule.path, key, ...(asYaml ? { value_yaml: value } : { value }) });
        const outcome = el("select", { class: "r-outcome" });
        for (const name of ["map", "skip", "reject"]) {
          outcome.append(el("option", { value: name, text: name, selected: name === rule.outcome }));
        }
        outcome.addEventListener("change", () => set("outcome", outcome.value));
        return el(
          "tr",
          {
            "data-rule": rule.name,
            class: rowHasProblem(rule.line, all[i + 1] && all[i + 1].line, problems) ? "problem" : "",
          },
          el("td", {}, el("code", { text: rule.name })),
          el("td", {}, input("r-when", rule.when, (v) => set("when", v, true))),
          el("td", {}, outcome),
          el("td", {}, rule.outcome === "map"
            ? `${rule.fields.length} field(s)`
            : input("r-reason", rule.reason, (v) => set("reason", v))),
          el("td", { class: "muted", text: rule.line || "" })
        );
      })
    );
    const lookups = $("lookups");
    lookups.replaceChildren(
      ...(view ? view.lookups : []).map((table) => {
        const rows = table.rows.map((row) =>
          el(
            "tr",
            { "data-lookup": table.name, "data-key": row.key },
            el("td", {}, el("code", { text: row.key })),
            el("td", {}, input("l-value", row.value, (v) =>
              edit(v.trim() === ""
                ? { op: "unset_lookup", table: table.name, key: row.key }
                : { op: "set_lookup", table: table.name, key: row.key, value_yaml: v })))
          )
        );
        const newKey = el("input", { class: "l-new-key", placeholder: "new key" });
        const newValue = el("input", { class: "l-new-value", placeholder: "value" });
        const add = el("button", { type: "button", text: "Add row" });
        add.addEventListener("click", () =>
          edit({ op: "set_lookup", table: table.name, key: newKey.value, value_yaml: newValue.value })
        );
        const fallback = table.default !== null ? `default: ${table.default}` : `unmapped: ${table.unmapped}`;
        return el(
          "div",
          {},
          el("h4", {}, el("code", { text: table.name }), ` (${fallback}, line ${table.line})`),
          el("table", {}, el("tbody", {}, ...rows,
            el("tr", {}, el("td", {}, newKey), el("td", {}, newValue, add))))
        );
      })
    );
  }

  function renderYaml(text, problems) {
    const list = $("yaml-lines");
    const bad = problemLines(problems);
    const items = [];
    for (const p of (problems || []).filter((p) => !p.line)) {
      items.push(el("li", { class: "problem", text: `${p.where ? p.where + ": " : ""}${p.message}` }));
    }
    text.split("\n").forEach((line, index) => {
      const number = index + 1;
      items.push(el("li", { value: number, class: bad.has(number) ? "bad" : "", "data-line": number, text: line || " " }));
      for (const p of (problems || []).filter((p) => p.line === number)) {
        items.push(
          el("li", {
            class: "problem",
            "data-line": number,
            text: `line ${number}:${p.column || 1}: ${p.where ? p.where + ": " : ""}${p.message}`,
          })
        );
      }
    });
    list.replaceChildren(...items);
  }

  function renderPreview(data) {
    const preview = data.preview || {};
    const problems = preview.problems || [];
    state.view = data.view || state.view;
    renderView(data.view, problems);
    renderYaml(state.yaml, problems);
    kvRows($("source-fields"), data.record_fields || [], null);
    const fields = preview.fields || [];
    kvRows($("target-fields"), fields, state.lastTarget);
    state.lastTarget = Object.fromEntries(fields.map((f) => [f.path, f.value]));
    const outcome = $("outcome");
    outcome.dataset.outcome = preview.outcome || "";
    outcome.textContent = problems.length ? `${problems.length} problem(s) in the YAML` : preview.outcome || "–";
    const detail = $("outcome-detail");
    detail.replaceChildren();
    if (preview.rule || preview.reason) {
      detail.append(el("p", { class: "reason", text: `${preview.rule || ""}: ${preview.reason || ""}` }));
    }
    for (const e of preview.errors || []) {
      detail.append(el("p", { class: "error", text: `${e.rule}: ${e.reason}` }));
    }
    const validation = preview.validation;
    const badge = $("validation");
    const vdetail = $("validation-detail");
    vdetail.replaceChildren();
    if (!validation) {
      badge.dataset.passed = "";
      badge.textContent = preview.outcome && preview.outcome !== "map" ? "not run (not mapped)" : "–";
    } else if (validation.error || validation.skipped) {
      badge.dataset.passed = "";
      badge.textContent = validation.error || validation.skipped;
    } else {
      badge.dataset.passed = String(validation.passed);
      badge.textContent = validation.passed ? `passed (${validation.payload_type})` : `failed (${validation.payload_type})`;
      for (const f of validation.failures) {
        vdetail.append(el("p", { class: "error", text: `${f.expectation}: ${f.reason}` }));
      }
    }
    busy(problems.length ? "The YAML has problems (see the YAML pane)." : "Up to date.");
  }

  // --- server round trips --------------------------------------------------------------------

  async function refresh() {
    const record = recordRef();
    if (!record) {
      busy("No record to preview: pick one or paste JSON.");
      renderView(state.view, []);
      renderYaml(state.yaml, []);
      return;
    }
    busy("Previewing…");
    try {
      renderPreview(await call(`${API}/preview`, { yaml: state.yaml, record }));
    } catch (error) {
      message(error.message, true);
      busy("Preview failed.");
    }
  }

  async function edit(change) {
    busy("Applying…");
    try {
      const data = await call(`${API}/edit`, { yaml: state.yaml, edit: change, record: recordRef() || { kind: "custom", json: "{}" } });
      state.yaml = data.yaml;
      $("yaml-text").value = data.yaml;
      renderPreview(data);
      $("messages").replaceChildren();
      return true;
    } catch (error) {
      message(error.message, true);
      busy("The edit was refused.");
      return false;
    }
  }

  let typing = null;
  $("yaml-text").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.yaml = $("yaml-text").value;
      refresh();
    }, 400);
  });
  $("record-kind").addEventListener("change", () => {
    fillRecords();
    state.lastTarget = {};
    refresh();
  });
  $("record").addEventListener("change", () => {
    state.lastTarget = {};
    refresh();
  });
  $("custom-record").addEventListener("change", refresh);

  // --- suggestions ---------------------------------------------------------------------------

  async function feedback(verdict, target, source) {
    if (!state.meta.can_edit) return;
    try {
      await call(`${API}/feedback`, { yaml: state.yaml, verdict, target, source });
    } catch (error) {
      message(`Not remembered: ${error.message}`, true);
    }
  }

  $("suggest").addEventListener("click", async () => {
    const record = recordRef();
    if (!record) return message("Pick a record first: suggestions read its values.", true);
    $("suggestions-pane").hidden = false;
    busy("Suggesting…");
    try {
      const data = await call(`${API}/suggest`, { yaml: state.yaml, record, target: $("target-sample").value || null });
      const box = $("suggestions");
      box.replaceChildren();
      if (!data.suggestions.length) box.append(el("p", { text: "Nothing to suggest: every target field is mapped." }));
      for (const item of data.suggestions) {
        const group = el("div", { class: "suggestion", "data-target": item.target }, el("h4", {}, el("code", { text: item.target })));
        for (const c of item.candidates) {
          const accept = el("button", { type: "button", class: "accept", text: "Accept" });
          const reject = el("button", { type: "button", class: "reject", text: "Reject" });
          const row = el(
            "div",
            { class: "candidate", "data-source": c.source },
            el("code", { text: c.source }),
            ` score ${c.score.toFixed(2)}`,
            c.transform ? el("span", { text: ` via ${c.transform.name}` }) : null,
            " ", accept, " ", reject,
            el("div", { class: "reasons", text: c.reasons.join("; ") })
          );
          accept.addEventListener("click", async () => {
            if (await edit({ op: "add_field", field: c.field })) {
              group.remove();
              await feedback("accepted", item.target, c.source);
            }
          });
          reject.addEventListener("click", async () => {
            row.remove();
            await feedback("rejected", item.target, c.source);
          });
          group.append(row);
        }
        box.append(group);
      }
      busy("Suggestions ready.");
    } catch (error) {
      message(error.message, true);
      busy("No suggestions.");
    }
  });

  // --- save, diff, download ------------------------------------------------------------------

  $("save").addEventListener("click", async () => {
    try {
      const data = await call(`${API}/diff`, { yaml: state.yaml });
      $("save-pane").hidden = false;
      $("diff").textContent = data.diff || "(no changes)";
      $("download-yaml").value = data.formatted;
      const canWrite = data.write_enabled && data.can_edit && !data.problems.length;
      $("write").hidden = !canWrite;
      $("save-note").textContent = data.problems.length
        ? `${data.problems.length} problem(s): fix them before saving or downloading.`
        : !data.write_enabled
          ? "Writing mapping files is off here ([stripe_sitecore] studio_write): download the YAML and commit it."
          : !data.can_edit
            ? "You may not edit the DAG that runs this mapping: download the YAML instead."
            : "Writing replaces the file on disk with the text above (comments kept).";
      $("save-result").textContent = "";
    } catch (error) {
      message(error.message, true);
    }
  });

  $("write").addEventListener("click", async () => {
    try {
      const data = await call(`${API}/save`, { yaml: state.yaml, base_sha: state.sha });
      state.sha = data.sha;
      $("save-result").textContent = `Written: ${data.written}`;
      $("save-result").dataset.written = "true";
      busy("Saved.");
    } catch (error) {
      $("save-result").textContent = `Not written: ${error.message}`;
    }
  });

  // --- dead-letter replay ----------------------------------------------------------------------

  function renderReplay() {
    const info = state.meta.dead_letters;
    const box = $("replay-box");
    box.replaceChildren();
    if (!info.source) return;
    if (!info.replayable) {
      box.append(el("span", { class: "muted", text: `Dead letters of ${info.source} are not replayable by ${info.dag_id}.` }));
      return;
    }
    const count = info.open === null || info.open === undefined ? "" : ` (${info.open} open)`;
    const ask = el("button", { type: "button", id: "replay", text: `Replay dead letters of ${info.source}${count}` });
    ask.addEventListener("click", () => {
      const go = el("button", { type: "button", id: "replay-confirm", text: `Trigger ${info.dag_id} for ${info.source}` });
      go.addEventListener("click", async () => {
        try {
          const run = await call(info.trigger_url, { logical_date: null, conf: info.conf });
          box.replaceChildren(
            el("a", { id: "replay-run", href: `${info.dag_url}/runs/${encodeURIComponent(run.dag_run_id)}`, target: "_top", text: `Run ${run.dag_run_id} queued` })
          );
        } catch (error) {
          message(`Replay not triggered: ${error.message}`, true);
        }
      });
      box.replaceChildren(go);
    });
    box.append(ask);
  }

  // --- a new mapping from two samples ----------------------------------------------------------

  $("draft").addEventListener("click", async () => {
    try {
      const data = await call(`${BASE}/studio/api/draft`, {
        name: $("draft-name").value,
        source_kind: $("draft-source-kind").value,
        target_kind: $("draft-target-kind").value,
        source_json: $("draft-source").value,
        target_json: $("draft-target").value,
      });
      const notes = data.problems.map((p) => `line ${p.line}: ${p.where}: ${p.message}`).join("\n");
      $("draft-result").textContent = data.yaml + (notes ? `\n# problems:\n${notes}` : "");
    } catch (error) {
      $("draft-result").textContent = error.message;
    }
  });

  // --- start ---------------------------------------------------------------------------------

  async function start() {
    try {
      const meta = await call(API);
      state.meta = meta;
      state.yaml = meta.yaml;
      state.sha = meta.sha;
      state.view = meta.view;
      $("yaml-text").value = meta.yaml;
      $("save").hidden = false;
      if (meta.store_error) message(meta.store_error, true);
      fillRecords();
      renderReplay();
      await refresh();
      root.dataset.ready = "true";
    } catch (error) {
      message(error.message, true);
      busy("Could not load the mapping.");
    }
  }
  start();
})();
