/* Preference center — progressive enhancement only: the page works fully without it.
   - A "Clear quiet hours" button (without JS: empty both time fields by hand).
   - After a save, or a submission with errors, move focus to the confirmation or to
     the error summary so that screen readers announce it and keyboard users start there. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  ready(function () {
    var clear = document.getElementById("pc-quiet-clear");
    var start = document.getElementById("id_quiet_start");
    var end = document.getElementById("id_quiet_end");
    if (clear && start && end) {
      clear.hidden = false;
      clear.addEventListener("click", function () {
        start.value = "";
        end.value = "";
        start.focus();
      });
    }

    var target = document.getElementById("pc-error-summary") || document.getElementById("pc-messages");
    if (target) {
      target.focus();
    }
  });
})();
