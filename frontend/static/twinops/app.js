// Draw every server-built Plotly figure: <script type="application/json" class="plotly-figure" data-target="ID">.
// Runs on page load and after each htmx swap, so chart partials draw themselves. Nothing else lives here.
(function () {
  "use strict";

  // Each figure is drawn once; a swapped-in partial brings new, undrawn <script> elements.
  function drawFigures() {
    if (typeof window.Plotly === "undefined") return;
    var scripts = document.querySelectorAll('script[type="application/json"].plotly-figure:not([data-drawn])');
    scripts.forEach(function (script) {
      var target = document.getElementById(script.dataset.target);
      if (!target) return;
      script.setAttribute("data-drawn", "");
      var figure = JSON.parse(script.textContent);
      var config = Object.assign({ responsive: true, displaylogo: false }, figure.config || {});
      window.Plotly.react(target, figure.data || [], figure.layout || {}, config);
    });
  }

  document.addEventListener("DOMContentLoaded", drawFigures);
  // After a swap the new partial is in the document; each figure div has a fresh id, so htmx's settle step
  // (which restores attributes of elements whose id survived the swap) never strips Plotly's classes.
  document.addEventListener("htmx:afterSwap", drawFigures);
  document.addEventListener("htmx:afterSettle", drawFigures);
})();
