// Headwater console: the little the pages need beyond htmx (no inline script: the CSP forbids it).
// Keep a followed log scrolled to its end while the reader has not scrolled up.
document.addEventListener("htmx:sseMessage", function (event) {
  var log = event.target && event.target.closest ? event.target.closest("pre.log") : null;
  if (log && log.scrollHeight - log.scrollTop - log.clientHeight < 80) {
    log.scrollTop = log.scrollHeight;
  }
});
