// The shell's small enhancements; every control works without this file.
(function () {
  "use strict";
  var wide = window.matchMedia("(min-width: 48rem)");

  // On wide screens the main menu is always shown: open its <details> for
  // browsers that cannot show closed content through CSS (::details-content).
  function syncNav() {
    document.querySelectorAll("details[data-wide-open]").forEach(function (details) {
      if (wide.matches) details.open = true;
    });
  }

  // Close open drop-downs on Escape (focus back to their button) and on a
  // click elsewhere.
  function closeMenus(except) {
    document.querySelectorAll("details.user-menu[open]").forEach(function (details) {
      if (details !== except) details.open = false;
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details.user-menu[open]");
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });
  document.addEventListener("click", function (event) {
    closeMenus(event.target.closest ? event.target.closest("details.user-menu") : null);
  });

  // A select that submits its form on change (data-autosubmit) still has a
  // submit button for keyboard and no-script users.
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-autosubmit]")) {
      event.target.form.requestSubmit();
    }
  });

  if (wide.addEventListener) wide.addEventListener("change", syncNav);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", syncNav);
  else syncNav();
})();
