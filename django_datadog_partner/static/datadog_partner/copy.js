/* "Copy reconnect link": copies in one click where the browser allows it. Without script
   (or clipboard access) the links still open the page that shows the link to copy. */
(function () {
  "use strict";
  function announce(element, text) {
    var status = document.getElementById("ddp-copy-status");
    if (status) { status.textContent = text; }
    element.setAttribute("data-ddp-copied", "true");
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!navigator.clipboard) { return; }
    document.querySelectorAll("button[data-ddp-copy][hidden]").forEach(function (button) {
      button.hidden = false;
    });
  });
  document.addEventListener("click", function (event) {
    var control = event.target.closest("[data-ddp-copy]");
    if (!control || !control.getAttribute("data-ddp-copy") || !navigator.clipboard) { return; }
    event.preventDefault();
    var link = control.getAttribute("data-ddp-copy");
    navigator.clipboard.writeText(link).then(
      function () { announce(control, "Copied to the clipboard: " + link); },
      function () { if (control.href) { window.location.href = control.href; } }
    );
  });
})();
