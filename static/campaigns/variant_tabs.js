/* Language tabs for a variant added with "Add another variant".
 *
 * modeltranslation's tabbed_translation_fields.js puts the translated fields of the
 * variants on the page into jQuery UI tabs, but it looks for Django's own inline
 * markup to hear about added rows, which Unfold replaces. Unfold (like Django)
 * fires "formset:added" on the new row; this builds the same tabs there: one tab
 * per language, the panel "tab_<input id>", so both kinds of tabs look and work
 * alike, and names the new variant with the next free letter. No inline script, no
 * network: jQuery UI is served from static/vendor.
 */
(function () {
  "use strict";

  var PREFIX = "mt-field-";

  function languageOf(el) {
    var cls = Array.prototype.find.call(el.classList, function (c) {
      return c.indexOf(PREFIX) === 0;
    });
    if (!cls) return null;
    var bits = cls.slice(PREFIX.length).split("-");
    return bits.length === 2 ? { field: bits[0], lang: bits[1] } : null;
  }

  function tabify(row) {
    var $ = window.jQuery || (window.django && window.django.jQuery);
    if (!$ || !$.fn.tabs) return;
    var groups = {};
    var order = [];
    row.querySelectorAll("input.mt, textarea.mt, select.mt").forEach(function (el) {
      if (el.closest(".ui-tabs") || !el.id || el.id.indexOf("__prefix__") !== -1) return;
      var found = languageOf(el);
      if (!found) return;
      if (!groups[found.field]) {
        groups[found.field] = [];
        order.push(found.field);
      }
      groups[found.field].push({ lang: found.lang, el: el });
    });
    order.forEach(function (field) {
      var items = groups[field];
      var first = items[0].el.closest(".form-row");
      if (!first) return;
      var container = document.createElement("div");
      var list = document.createElement("ul");
      container.appendChild(list);
      first.parentNode.insertBefore(container, first);
      items.forEach(function (item) {
        var fieldRow = item.el.closest(".form-row");
        var panel = document.createElement("div");
        panel.id = "tab_" + item.el.id;
        panel.appendChild(fieldRow);
        var label = fieldRow.querySelector("label");
        if (label) label.textContent = label.textContent.replace(/ \[.+\]/, "");
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = "#" + panel.id;
        a.textContent = item.lang.replace("_", "-");
        li.appendChild(a);
        list.appendChild(li);
        container.appendChild(panel);
      });
      $(container).tabs({ active: 0 });
    });
  }

  // An added variant is offered the next free letter (A, B, … are taken).
  function nameAfterOthers(row) {
    var input = row.querySelector('input[name$="-name"]');
    if (!input || !input.id) return;
    var taken = {};
    document.querySelectorAll('#variants-group input[name^="variants-"][name$="-name"]').forEach(function (other) {
      if (other !== input && other.name.indexOf("__prefix__") === -1) taken[other.value.trim()] = true;
    });
    if (!taken[input.value.trim()]) return;
    var letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (var i = 0; i < letters.length; i++) {
      if (!taken[letters[i]]) {
        input.value = letters[i];
        return;
      }
    }
  }

  document.addEventListener("formset:added", function (event) {
    if (!event.detail || event.detail.formsetName !== "variants") return;
    var row = event.target.closest(".form-group") || event.target;
    tabify(row);
    nameAfterOthers(row);
  });
})();
