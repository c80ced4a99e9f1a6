// Holdfast console: keyboard triage on the alert queue, and a confirmation before an
// offboarding. Everything works without this script; it only saves keystrokes.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  if (queue) {
    var rows = Array.prototype.slice.call(queue.querySelectorAll("tbody tr"));
    var bulk = document.getElementById("bulk");
    var current = -1;
    function select(i) {
      if (rows.length === 0) { return; }
      i = Math.max(0, Math.min(rows.length - 1, i));
      if (current >= 0) { rows[current].classList.remove("current"); }
      current = i;
      rows[i].classList.add("current");
      rows[i].setAttribute("tabindex", "-1");
      rows[i].focus();
    }
    function checked() {
      return rows.filter(function (r) { return r.querySelector("input[type=checkbox]").checked; });
    }
    function act(status) {
      if (!bulk) { return; }
      if (checked().length === 0 && current >= 0) {
        rows[current].querySelector("input[type=checkbox]").checked = true;
      }
      if (checked().length === 0) { return; }
      var button = bulk.querySelector("button[value=" + status + "]");
      if (button) { bulk.requestSubmit(button); }
    }
    document.addEventListener("keydown", function (e) {
      var t = e.target;
      if (e.ctrlKey || e.metaKey || e.altKey) { return; }
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) { return; }
      switch (e.key) {
        case "j": select(current + 1); break;
        case "k": select(current - 1); break;
        case "x": if (current >= 0) { var c = rows[current].querySelector("input[type=checkbox]"); c.checked = !c.checked; } break;
        case "o": case "Enter": if (current >= 0) { window.location = rows[current].querySelector("a").href; } break;
        case "t": act("triaged"); break;
        case "r": act("resolved"); break;
        case "f": act("false_positive"); break;
        default: return;
      }
      e.preventDefault();
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("form.offboard"), function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm("Offboard " + f.getAttribute("data-user") + " now? Their devices quarantine customer files.")) {
        e.preventDefault();
      }
    });
  });
})();
