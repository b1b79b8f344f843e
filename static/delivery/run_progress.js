/* The Run page follows its run: polls the JSON status view and updates the texts.
   Loaded as a file (no inline script: CSP-friendly). Every changing text on the page
   carries data-display="<key>"; the JSON's "display" has the text for each key, so
   nothing is formatted here. A new status or a new arm reloads the page (its buttons
   and table depend on them). Stops when the run stops moving. */
(function () {
  "use strict";

  function start() {
    var root = document.getElementById("run-progress");
    if (!root || root.dataset.live !== "true" || !window.fetch) {
      return;
    }
    var url = root.dataset.statusUrl;
    var every = Math.max(1, parseInt(root.dataset.refreshSeconds, 10) || 5) * 1000;
    var bar = document.getElementById("run-progress-bar");

    function render(data) {
      var progress = data.progress;
      if (progress.status !== root.dataset.status || data.arms !== root.dataset.arms) {
        window.location.reload();
        return false;
      }
      Object.keys(data.display).forEach(function (key) {
        root.querySelectorAll('[data-display="' + key + '"]').forEach(function (element) {
          element.textContent = data.display[key];
        });
      });
      if (bar) {
        bar.max = Math.max(1, progress.total);
        bar.value = progress.done;
      }
      return progress.is_live;
    }

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (data) {
          if (render(data)) {
            window.setTimeout(tick, every);
          }
        })
        .catch(function () {
          window.setTimeout(tick, every * 3); // the server is busy or restarting: back off
        });
    }

    window.setTimeout(tick, every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
