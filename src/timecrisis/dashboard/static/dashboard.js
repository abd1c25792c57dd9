// timecrisis dashboard: live regions, in plain JavaScript (no framework, nothing from another
// site). An element with data-refresh="URL" and data-every="SECONDS" is fetched again every
// SECONDS with the X-Timecrisis-Fragment header; the server answers with that region alone,
// rendered and escaped by the same template, and it replaces the old one. A region that comes
// back without data-refresh (a finished job) stops refreshing. Nothing refreshes while the tab
// is hidden.
(function () {
  "use strict";

  function watch(id) {
    var region = document.getElementById(id);
    if (!region || !region.dataset.refresh) {
      return;
    }
    var every = Math.max(0.5, Number(region.dataset.every) || 2) * 1000;
    window.setTimeout(function () { refresh(id, every); }, every);
  }

  function refresh(id, every) {
    var region = document.getElementById(id);
    if (!region || !region.dataset.refresh) {
      return;
    }
    if (document.hidden) {
      window.setTimeout(function () { refresh(id, every); }, every);
      return;
    }
    fetch(region.dataset.refresh, {
      headers: { "X-Timecrisis-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
      var current = document.getElementById(id);
      if (fresh && current) {
        current.replaceWith(document.adoptNode(fresh));
      }
      document.body.classList.remove("stale");
    }).catch(function () {
      document.body.classList.add("stale");  // keep the last view, mark it, try again
    }).then(function () {
      var next = document.getElementById(id);
      if (next && next.dataset.refresh) {
        window.setTimeout(function () { refresh(id, every); }, every);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-refresh][id]");
    for (var i = 0; i < regions.length; i++) {
      watch(regions[i].id);
    }
  });
})();
