// The console's own script: the menu button on narrow screens, and confirmation for
// destructive forms (forms with data-confirm). Everything else is plain HTML and htmx.
document.addEventListener("DOMContentLoaded", function () {
  var toggle = document.getElementById("menu-toggle");
  var nav = document.getElementById("nav");
  if (toggle && nav) {
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  }, true);
});
// A file input with data-fills="ID" reads the chosen file into the textarea ID.
document.addEventListener("change", function (e) {
  var id = e.target.getAttribute && e.target.getAttribute("data-fills");
  if (!id || !e.target.files || !e.target.files[0]) { return; }
  var reader = new FileReader();
  reader.onload = function () { document.getElementById(id).value = reader.result; };
  reader.readAsText(e.target.files[0]);
});
