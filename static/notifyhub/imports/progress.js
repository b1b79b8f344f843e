// Progress bar of a background import: polls the job's status.json and reloads the
// page (which then shows the check or the result) once the job has finished.
(function () {
  "use strict";
  function start() {
    var box = document.getElementById("import-progress");
    if (!box) return;
    var url = box.getAttribute("data-status-url");
    var bar = document.getElementById("progress-bar");
    var rows = document.getElementById("progress-rows");
    var total = document.getElementById("progress-total");
    var errors = document.getElementById("progress-errors");
    var phase = document.getElementById("progress-phase");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (data) {
          if (data.finished) { window.location.reload(); return; }
          bar.style.width = String(data.percent) + "%";
          rows.textContent = Number(data.rows_done).toLocaleString();
          total.textContent = data.total_rows === null ? "?" : Number(data.total_rows).toLocaleString();
          errors.textContent = Number(data.errors).toLocaleString();
          if (data.phase === "importing") phase.textContent = phase.getAttribute("data-importing") || phase.textContent;
          window.setTimeout(poll, 1000);
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    window.setTimeout(poll, 500);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
