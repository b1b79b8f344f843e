/* NotifyHub segment builder: edits the rule tree in a hidden input, no JSON typing.
 *
 * Vanilla JS, no build step, no CDN. The tree shape is documented in
 * audiences/segments/validation.py; field and operator definitions come from the
 * catalog the server renders into #segment-catalog. Every change re-serializes the
 * tree and (debounced) asks the admin's estimate endpoint for the live size.
 */
(function () {
  "use strict";

  var MAX_DEPTH = 4;
  var DEBOUNCE_MS = 400;

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function emptyRules() {
    return { match: "all", conditions: [], exclude: { match: "any", conditions: [] } };
  }

  function isGroup(node) {
    return node && Object.prototype.hasOwnProperty.call(node, "conditions");
  }

  function countConditions(group) {
    return (group.conditions || []).reduce(function (n, child) {
      return n + (isGroup(child) ? countConditions(child) : 1);
    }, 0);
  }

  ready(function () {
    var host = document.querySelector("[data-segment-builder]");
    if (!host) return;
    var input = document.getElementById(host.getAttribute("data-input"));
    var catalog = JSON.parse(document.getElementById("segment-catalog").textContent);
    var fields = {};
    catalog.fields.forEach(function (f) { fields[f.key] = f; });
    var root = host.querySelector("[data-builder-root]");
    var match = window.location.pathname.match(/\/segment\/(\d+)\/change\/?$/);
    var segmentId = match ? match[1] : null;
    var state;
    try {
      state = JSON.parse(input.value || "{}");
    } catch (e) {
      state = emptyRules();
    }
    if (!state || typeof state !== "object" || !Array.isArray(state.conditions)) state = emptyRules();
    if (!state.exclude || !Array.isArray(state.exclude.conditions)) state.exclude = { match: "any", conditions: [] };

    // -- values ---------------------------------------------------------------

    function operatorOf(cond) {
      var field = fields[cond.field];
      if (!field) return null;
      return field.operators.filter(function (op) { return op.key === cond.op; })[0] || null;
    }

    function defaultValue(field, op) {
      switch (op.value) {
        case "none": return null;
        case "texts": case "choices": return [];
        case "number_range": case "date_range": return ["", ""];
        case "days": return 30;
        case "choice": return field.choices.length ? field.choices[0][0] : "";
        case "event": return { name: "", count: 1, days: 30, where: null };
        default: return "";
      }
    }

    function listText(value) {
      return Array.isArray(value) ? value.join(", ") : (value || "");
    }

    function splitList(text) {
      return text.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
    }

    // -- rendering --------------------------------------------------------------

    function changed(rerender) {
      input.value = JSON.stringify(state);
      if (rerender) render();
      scheduleEstimate();
    }

    function fieldSelect(cond) {
      var select = el("select", { "class": "nh-field", "aria-label": "Field", "data-role": "field" }, [
        el("option", { value: "", text: "Choose a field…" }),
      ]);
      var groups = {};
      catalog.fields.forEach(function (f) {
        if (!groups[f.group]) {
          groups[f.group] = el("optgroup", { label: f.group });
          select.appendChild(groups[f.group]);
        }
        groups[f.group].appendChild(el("option", { value: f.key, text: f.label }));
      });
      if (cond.field && !fields[cond.field]) {
        select.appendChild(el("option", { value: cond.field, text: cond.field + " (no longer available)" }));
      }
      select.value = cond.field || "";
      select.addEventListener("change", function () {
        var field = fields[select.value];
        cond.field = select.value;
        cond.op = field ? field.operators[0].key : "";
        cond.value = field ? defaultValue(field, field.operators[0]) : null;
        changed(true);
      });
      return select;
    }

    function operatorSelect(cond) {
      var field = fields[cond.field];
      var select = el("select", { "class": "nh-operator", "aria-label": "Comparison", "data-role": "operator" });
      field.operators.forEach(function (op) {
        select.appendChild(el("option", { value: op.key, text: op.label }));
      });
      select.value = cond.op;
      select.addEventListener("change", function () {
        var before = operatorOf(cond);
        cond.op = select.value;
        var after = operatorOf(cond);
        if (!before || before.value !== after.value) cond.value = defaultValue(field, after);
        changed(true);
      });
      return select;
    }

    function textInput(value, attrs, onInput) {
      var node = el("input", Object.assign({ type: "text", "class": "nh-value" }, attrs));
      node.value = value === null || value === undefined ? "" : value;
      node.addEventListener("input", function () { onInput(node.value); changed(false); });
      return node;
    }

    function datalist(id, values) {
      return el("datalist", { id: id }, values.map(function (v) { return el("option", { value: v }); }));
    }

    var uid = 0;

    function valueEditor(cond) {
      var field = fields[cond.field];
      var op = operatorOf(cond);
      var box = el("span", { "class": "nh-value-box", "data-role": "value" });
      var set = function (v) { cond.value = v; };
      switch (op.value) {
        case "none":
          break;
        case "text":
          box.appendChild(textInput(cond.value, { "aria-label": "Value" }, set));
          break;
        case "texts":
          box.appendChild(textInput(listText(cond.value), { "aria-label": "Values", placeholder: "one, two, three" },
            function (v) { cond.value = splitList(v); }));
          break;
        case "number":
          box.appendChild(textInput(cond.value, { type: "number", step: "any", "aria-label": "Number" }, set));
          break;
        case "number_range":
        case "date_range":
          var type = op.value === "number_range" ? "number" : "date";
          var pair = Array.isArray(cond.value) ? cond.value.slice() : ["", ""];
          cond.value = pair;
          box.appendChild(textInput(pair[0], { type: type, step: "any", "aria-label": "From" }, function (v) { pair[0] = v; }));
          box.appendChild(el("span", { text: " and " }));
          box.appendChild(textInput(pair[1], { type: type, step: "any", "aria-label": "To" }, function (v) { pair[1] = v; }));
          break;
        case "date":
          box.appendChild(textInput(cond.value, { type: "date", "aria-label": "Date" }, set));
          break;
        case "days":
          box.appendChild(textInput(cond.value, { type: "number", min: "1", step: "1", "aria-label": "Days", "class": "nh-value nh-value--short" }, set));
          box.appendChild(el("span", { text: " days" }));
          break;
        case "choice":
          var select = el("select", { "class": "nh-value", "aria-label": "Value" });
          field.choices.forEach(function (c) { select.appendChild(el("option", { value: c[0], text: c[1] })); });
          select.value = cond.value === null || cond.value === undefined ? "" : String(cond.value);
          select.addEventListener("change", function () { cond.value = select.value; changed(false); });
          box.appendChild(select);
          break;
        case "choices":
          if (field.open_choices) {
            var listId = "nh-list-" + (++uid);
            box.appendChild(textInput(listText(cond.value), {
              "aria-label": "Values", list: listId, placeholder: field.choices.length ? field.choices.slice(0, 3).map(function (c) { return c[0]; }).join(", ") : "one, two",
            }, function (v) { cond.value = splitList(v); }));
            box.appendChild(datalist(listId, field.choices.map(function (c) { return c[0]; })));
          } else {
            var chosen = Array.isArray(cond.value) ? cond.value.slice() : [];
            cond.value = chosen;
            field.choices.forEach(function (c) {
              var check = el("input", { type: "checkbox", value: c[0] });
              check.checked = chosen.indexOf(c[0]) !== -1;
              check.addEventListener("change", function () {
                var at = chosen.indexOf(c[0]);
                if (check.checked && at === -1) chosen.push(c[0]);
                if (!check.checked && at !== -1) chosen.splice(at, 1);
                changed(false);
              });
              box.appendChild(el("label", { "class": "nh-check" }, [check, " " + c[1]]));
            });
          }
          break;
        case "event":
          box.appendChild(eventEditor(cond, field, op));
          break;
      }
      return box;
    }

    function eventEditor(cond, field, op) {
      var v = cond.value && typeof cond.value === "object" ? cond.value : defaultValue(field, op);
      cond.value = v;
      var listId = "nh-events-" + (++uid);
      var parts = [
        textInput(v.name, { "aria-label": "Event name", list: listId, placeholder: "purchase" }, function (x) { v.name = x; }),
        datalist(listId, field.suggestions),
      ];
      if (op.key === "did") {
        parts.push(el("span", { text: " at least " }));
        parts.push(textInput(v.count, { type: "number", min: "1", "aria-label": "Times", "class": "nh-value nh-value--short" }, function (x) { v.count = x; }));
        parts.push(el("span", { text: " times" }));
      }
      parts.push(el("span", { text: " in the last " }));
      parts.push(textInput(v.days, { type: "number", min: "1", "aria-label": "Days", "class": "nh-value nh-value--short" }, function (x) { v.days = x; }));
      parts.push(el("span", { text: " days" }));
      var where = v.where || { key: "", op: "eq", value: "" };
      var propOp = el("select", { "aria-label": "Property comparison" });
      catalog.property_operators.forEach(function (o) { propOp.appendChild(el("option", { value: o.key, text: o.label })); });
      propOp.value = where.op;
      var syncWhere = function () { v.where = where.key ? where : null; };
      propOp.addEventListener("change", function () { where.op = propOp.value; syncWhere(); changed(false); });
      parts.push(el("span", { "class": "nh-where" }, [
        " where ",
        textInput(where.key, { "aria-label": "Property", placeholder: "property (optional)" }, function (x) { where.key = x.trim(); syncWhere(); }),
        propOp,
        textInput(where.value, { "aria-label": "Property value", placeholder: "value" }, function (x) { where.value = x; syncWhere(); }),
      ]));
      return el("span", { "class": "nh-event" }, parts);
    }

    function problemSlot(path) {
      return el("p", { "class": "nh-segment__problem", "data-problem-for": path, hidden: true });
    }

    function renderCondition(cond, path, remove) {
      var row = el("div", { "class": "nh-condition", "data-path": path, "data-node": "condition" }, [fieldSelect(cond)]);
      if (fields[cond.field]) {
        if (!operatorOf(cond)) cond.op = fields[cond.field].operators[0].key;
        row.appendChild(operatorSelect(cond));
        row.appendChild(valueEditor(cond));
      }
      row.appendChild(el("button", { type: "button", "class": "nh-remove", title: "Remove this condition", "aria-label": "Remove condition", onclick: remove, text: "✕" }));
      return el("div", { "class": "nh-node" }, [row, problemSlot(path)]);
    }

    function renderGroup(group, path, depth, kind, remove) {
      var prefix = path ? path + "." : "";
      var title = kind === "exclude" ? "Exclude subscribers who match" : kind === "root" ? "Include subscribers who match" : "Match";
      var matchSelect = el("select", { "aria-label": "All or any", "data-role": "match" }, [
        el("option", { value: "all", text: "all" }),
        el("option", { value: "any", text: "any" }),
      ]);
      matchSelect.value = group.match === "any" ? "any" : "all";
      matchSelect.addEventListener("change", function () { group.match = matchSelect.value; changed(false); });
      var header = el("div", { "class": "nh-group__header" }, [title + " ", matchSelect, " of these conditions"]);
      if (remove) header.appendChild(el("button", { type: "button", "class": "nh-remove", "aria-label": "Remove group", title: "Remove this group", onclick: remove, text: "✕" }));
      var list = el("div", { "class": "nh-group__items" });
      group.conditions.forEach(function (child, index) {
        var childPath = prefix + "conditions." + index;
        var drop = function () { group.conditions.splice(index, 1); changed(true); };
        list.appendChild(isGroup(child)
          ? renderGroup(child, childPath, depth + 1, "group", drop)
          : renderCondition(child, childPath, drop));
      });
      if (!group.conditions.length) {
        list.appendChild(el("p", { "class": "nh-empty", text: kind === "exclude" ? "Nobody is excluded." : "No conditions yet." }));
      }
      var actions = el("div", { "class": "nh-group__actions" }, [
        el("button", { type: "button", "class": "nh-add", "data-action": "add-condition", text: "+ Add condition",
          onclick: function () { group.conditions.push({ field: "", op: "", value: null }); changed(true); } }),
      ]);
      if (depth < MAX_DEPTH - 1) {
        actions.appendChild(el("button", { type: "button", "class": "nh-add", "data-action": "add-group", text: "+ Add group",
          onclick: function () { group.conditions.push({ match: "any", conditions: [{ field: "", op: "", value: null }] }); changed(true); } }));
      }
      return el("div", { "class": "nh-group nh-group--" + kind, "data-path": path, "data-node": "group" }, [
        header, problemSlot(path), list, actions,
      ]);
    }

    function render() {
      root.textContent = "";
      root.appendChild(renderGroup(state, "", 0, "root", null));
      root.appendChild(renderGroup(state.exclude, "exclude", 0, "exclude", null));
    }

    // -- live estimate ----------------------------------------------------------

    var totalNode = host.querySelector("[data-estimate-total]");
    var reachableNode = host.querySelector("[data-estimate-reachable]");
    var statusNode = host.querySelector("[data-estimate-status]");
    var sampleNode = host.querySelector("[data-estimate-sample]");
    var topicNode = host.querySelector("[data-estimate-topic]");
    var rootProblems = host.querySelector("[data-problems-root]");
    var timer = null;
    var sequence = 0;

    function clearProblems() {
      host.querySelectorAll("[data-problem-for]").forEach(function (p) { p.hidden = true; p.textContent = ""; });
      host.querySelectorAll(".nh-has-problem").forEach(function (n) { n.classList.remove("nh-has-problem"); });
      rootProblems.hidden = true;
      rootProblems.textContent = "";
    }

    function showProblems(problems) {
      problems.forEach(function (problem) {
        var slot = problem.path === "" ? null : host.querySelector('[data-problem-for="' + problem.path + '"]');
        if (slot) {
          slot.textContent = (slot.textContent ? slot.textContent + " " : "") + problem.message;
          slot.hidden = false;
          var node = host.querySelector('[data-path="' + problem.path + '"]');
          if (node) node.classList.add("nh-has-problem");
        } else {
          rootProblems.textContent = (rootProblems.textContent ? rootProblems.textContent + " " : "") +
            (problem.where ? problem.where + ": " : "") + problem.message;
          rootProblems.hidden = false;
        }
      });
    }

    function csrfToken() {
      var field = document.querySelector("[name=csrfmiddlewaretoken]");
      return field ? field.value : "";
    }

    function scheduleEstimate() {
      window.clearTimeout(timer);
      timer = window.setTimeout(estimate, DEBOUNCE_MS);
    }

    function estimate() {
      var mine = ++sequence;
      if (!countConditions(state) && !countConditions(state.exclude)) {
        clearProblems();
        totalNode.textContent = "—";
        reachableNode.textContent = "—";
        sampleNode.textContent = "";
        statusNode.textContent = "Add a condition to see who matches.";
        return;
      }
      host.setAttribute("aria-busy", "true");
      statusNode.textContent = "Counting…";
      fetch(host.getAttribute("data-estimate-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ rules: state, topic: topicNode.value || null, segment: segmentId }),
      }).then(function (response) {
        return response.json().catch(function () { return { ok: false, message: "The server answered " + response.status + "." }; });
      }).then(function (data) {
        if (mine !== sequence) return;  // a newer request is on its way
        host.removeAttribute("aria-busy");
        clearProblems();
        if (!data.ok) {
          totalNode.textContent = "—";
          reachableNode.textContent = "—";
          sampleNode.textContent = "";
          if (data.problems) showProblems(data.problems);
          statusNode.textContent = data.message || "Fix the highlighted conditions to see the size.";
          return;
        }
        totalNode.textContent = data.total.toLocaleString();
        reachableNode.textContent = data.reachable.toLocaleString();
        statusNode.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
        sampleNode.textContent = "";
        data.sample.forEach(function (s) {
          sampleNode.appendChild(el("li", {}, [
            el("a", { href: s.url, text: s.external_id }),
            s.name ? " · " + s.name : "",
            s.country ? " · " + s.country : "",
          ]));
        });
        host.setAttribute("data-estimate-ready", "true");
      }).catch(function () {
        if (mine !== sequence) return;
        host.removeAttribute("aria-busy");
        statusNode.textContent = "Could not reach the server to count; the rules are still saved with the form.";
      });
    }

    topicNode.addEventListener("change", scheduleEstimate);

    // -- kind (rules or static list) on the add form ----------------------------

    var kind = document.getElementById("id_kind");
    function row(name) {
      var field = document.querySelector(".field-" + name) || (document.getElementById("id_" + name) || {}).parentNode;
      return field && field.closest ? (field.closest(".field-row, .form-row, [class*='field-" + name + "']") || field) : null;
    }
    function syncKind() {
      if (!kind) return;
      var isStatic = kind.value === "static";
      var rules = row("rules");
      var paste = row("paste_external_ids");
      if (rules) rules.hidden = isStatic;
      if (paste) paste.hidden = !isStatic;
    }
    if (kind) {
      kind.addEventListener("change", syncKind);
      syncKind();
    }

    host.classList.add("nh-segment--ready");
    input.value = JSON.stringify(state);
    render();
    estimate();
  });
})();
