// Sundial's own script: times in the reader's zone. Pages render every time in UTC,
// which is what a reader without JavaScript sees; htmx.onLoad runs this on the page and
// again on every fragment the live feed swaps in.
(function () {
  "use strict";
  var local = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZoneName: "short",
  });

  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (!isNaN(moment.getTime())) {
        element.textContent = local.format(moment);
      }
      element.removeAttribute("data-local");
    });
  }

  htmx.onLoad(localize);
})();
