// A page's live part (the overview's, the fire page's, the charging page's, the residents list, an enrollment's): the server sends it whole, rendered, on every change (server-sent events).
// With data-add="top" (the events table) each message is new rows, put on top of those shown, and an event
// "count" the page's count of them (id="live-count").
"use strict";
(function () {
  var live = document.getElementById("live");
  var state = document.getElementById("link-state");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-src"));
  source.onmessage = function (event) {
    if (live.getAttribute("data-add") === "top") {
      live.insertAdjacentHTML("afterbegin", event.data);
    } else {
      live.innerHTML = event.data;
    }
    state.textContent = "";
    live.setAttribute("data-updated", String(Date.now()));
  };
  source.addEventListener("count", function (event) {  // the events page's count, with the rows just put on top
    var count = document.getElementById("live-count");
    if (count) { count.innerHTML = event.data; }
  });
  source.addEventListener("logout", function (event) { window.location.assign(event.data); });
  source.addEventListener("end", function () { source.close(); });  // a finished stream is not asked again
  source.onerror = function () { state.textContent = "\u26a0"; };
})();
