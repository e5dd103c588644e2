// Enhancements only: every page works without this file.
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function format(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return h > 0 ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  // The order countdown counts from the server's figure and the page's own monotonic
  // clock, so a wrong clock on the visitor's machine changes nothing.
  function startCountdown(box) {
    var left = parseInt(box.getAttribute("data-seconds-left"), 10);
    if (isNaN(left)) { return; }
    var deadline = performance.now() + left * 1000;
    var time = box.querySelector(".countdown-time");
    var timer;
    function tick() {
      var remaining = Math.ceil((deadline - performance.now()) / 1000);
      if (remaining > 0) {
        time.textContent = format(remaining);
        return;
      }
      clearInterval(timer);
      box.classList.add("is-expired");
      box.querySelector("p").hidden = true;
      box.querySelector(".countdown-expired").hidden = false;
      var status = document.getElementById("order-status");
      if (status) {
        status.textContent = "Expired";
        status.className = "badge badge-muted";
      }
      var forms = document.querySelectorAll("[data-pay-form]");
      for (var i = 0; i < forms.length; i++) { forms[i].hidden = true; }
    }
    tick();
    timer = setInterval(tick, 250);
  }

  // A second click while a form is on its way would post it twice.
  function guardDoubleSubmit(form) {
    form.addEventListener("submit", function () {
      var buttons = form.querySelectorAll("button[type=submit]");
      for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < boxes.length; i++) { startCountdown(boxes[i]); }
    var forms = document.querySelectorAll("form[data-once]");
    for (var j = 0; j < forms.length; j++) { guardDoubleSubmit(forms[j]); }
  });
})();
