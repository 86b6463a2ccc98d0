// Keyboard shortcuts for the review page. No inline script: the CSP allows 'self' only.
// Enter / c: confirm the proposed topic; 1-9, 0: pick that topic; u: undo the last action.
(function () {
  "use strict";
  var busy = false;
  function submitVia(button) {
    if (!button || busy) { return; }
    busy = true;
    button.click();
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
    var key = ev.key;
    var button = null;
    if (key === "Enter" || key === "c") {
      if (tag === "BUTTON" && key === "Enter") { return; }  // a focused button handles Enter itself
      button = document.getElementById("confirm");
    } else if (key === "u") {
      button = document.getElementById("undo");
    } else if (/^[0-9]$/.test(key)) {
      button = document.querySelector('button[data-key="' + key + '"]');
    }
    if (button) {
      ev.preventDefault();
      submitVia(button);
    }
  });
  document.addEventListener("submit", function () { busy = true; });
})();
