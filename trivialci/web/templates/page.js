(function () {
  "use strict";
  var view = document.getElementById("view"), live = document.getElementById("live");
  var every = Number(view.getAttribute("data-refresh")) || 2000, last = view.innerHTML;
  function refresh() {
    if (document.hidden) { setTimeout(refresh, every); return; }
    fetch(location.href, {headers: {"X-Part": "main"}, cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        if (html !== last) { view.innerHTML = html; last = html; }
        live.textContent = "live, updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) { live.textContent = "not updating: " + e.message; })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);

  var log = document.getElementById("log"), lines = document.getElementById("log-lines");
  if (!log || log.getAttribute("data-follow") !== "1") return;
  function atBottom() { return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40; }
  function follow() {
    var from = log.getAttribute("data-from"), line = log.getAttribute("data-line");
    fetch(log.getAttribute("data-part") + "?from=" + from + "&line=" + line, {cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text().then(function (html) { return [r, html]; });
      })
      .then(function (got) {
        var r = got[0], html = got[1], stick = atBottom();
        if (html) { lines.insertAdjacentHTML("beforeend", html); if (stick) window.scrollTo(0, document.body.scrollHeight); }
        log.setAttribute("data-from", r.headers.get("X-Next-Offset") || from);
        log.setAttribute("data-line", r.headers.get("X-Next-Line") || line);
        var state = document.getElementById("log-state");
        if (r.headers.get("X-Log-Complete") === "1" && r.headers.get("X-Log-More") !== "1") {
          state.textContent = "the log is complete"; return;
        }
        state.textContent = r.headers.get("X-Log-Source") === "none" ? "waiting for the job to start" : "following the log";
        setTimeout(follow, r.headers.get("X-Log-More") === "1" ? 0 : 1000);
      })
      .catch(function (e) { document.getElementById("log-state").textContent = "not following: " + e.message; setTimeout(follow, 3000); });
  }
  follow();
})();
