/* budeval web UI: learning curves with CI bands (uPlot, vendored by scripts/vendor_ui_assets.sh). */
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  document.querySelectorAll("div.chart[data-curve]").forEach(function (el) {
    var data = JSON.parse(document.getElementById(el.dataset.curve).textContent);
    var opts = {
      width: 360, height: 220,
      scales: { x: { time: false }, y: { range: [0, 100] } },
      axes: [{ label: data.step_axis ? "step" : "checkpoint" }, { label: "score" }],
      series: [
        {},
        { label: "score", stroke: "#0550ae", width: 2, points: { show: true } },
        { label: "CI low", stroke: "rgba(5,80,174,0.25)" },
        { label: "CI high", stroke: "rgba(5,80,174,0.25)" }
      ],
      bands: [{ series: [3, 2], fill: "rgba(5,80,174,0.12)" }]
    };
    new uPlot(opts, [data.x, data.score, data.low, data.high], el);
  });
})();
