/* budeval web UI: the evaluation page's live status (polls its status.json until the evaluation is final; a 401
   -- the session ended -- reloads the page, which leads to the login form). */
(function () {
  "use strict";
  var section = document.getElementById("status-section");
  if (!section || section.dataset.final === "true") { return; }
  var url = section.dataset.pollUrl;
  var status = document.getElementById("status");
  var bar = document.getElementById("progress");
  var text = document.getElementById("progress-text");
  var timer = null;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        /* the session ended (logout elsewhere, expiry, a new token): reloading leads to the login form */
        if (r.status === 401) { window.clearInterval(timer); window.location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (p) {
        if (!p) { return; }
        status.textContent = p.status;
        status.className = "status status-" + p.status;
        bar.max = Math.max(p.total, 1);
        bar.value = p.done;
        text.textContent = p.done + " of " + p.total;
        if (p.final) { window.clearInterval(timer); window.location.reload(); }
      })
      .catch(function () { /* the next poll tries again */ });
  }
  timer = window.setInterval(poll, 2000);
})();
