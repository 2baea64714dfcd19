// Draws the report's figures from the JSON block #report-data with the plotly.js bundle inlined above.
// Matrices arrive quantised (uint8, base64; see orchestrator/report/figures.py::quantise).
(function () {
  "use strict";
  var blob = JSON.parse(document.getElementById("report-data").textContent);
  var plotConfig = {responsive: true, displaylogo: false, scrollZoom: false};
  var baseLayout = {margin: {l: 70, r: 30, t: 40, b: 60}, font: {family: "system-ui, sans-serif", size: 12},
                    paper_bgcolor: "#fff", plot_bgcolor: "#fbfcfd", hoverlabel: {align: "left"}};

  function layoutOf(fig, extra) {
    return Object.assign({}, baseLayout, fig.layout, extra || {});
  }

  function decode(m) {
    var bin = atob(m.b64), n = m.shape[0], k = m.shape[1], step = (m.hi - m.lo) / 254, rows = new Array(n);
    for (var i = 0; i < n; i++) {
      var row = new Array(k), off = i * k;
      for (var j = 0; j < k; j++) {
        var c = bin.charCodeAt(off + j);
        row[j] = c === 255 ? null : m.lo + c * step;
      }
      rows[i] = row;
    }
    return rows;
  }

  function drawMatrix(fig, el) {
    var z = decode(fig.matrix), names = fig.data[0].x, labels = fig.filter_by;
    var select = document.getElementById(fig.id + "-filter");
    function draw(keep) {
      var idx = [];
      for (var i = 0; i < labels.length; i++) if (keep === "all" || labels[i] === keep) idx.push(i);
      var sub = idx.length === names.length ? z : idx.map(function (a) { return idx.map(function (b) { return z[a][b]; }); });
      var kept = idx.map(function (i) { return names[i]; });
      var trace = Object.assign({}, fig.data[0], {x: kept, y: kept, z: sub});
      var ticks = kept.length <= 60;
      var layout = layoutOf(fig);
      layout.xaxis = Object.assign({}, fig.layout.xaxis, {showticklabels: ticks});
      layout.yaxis = Object.assign({}, fig.layout.yaxis, {showticklabels: ticks});
      if (ticks) layout.margin = {l: 260, r: 30, t: 30, b: 200};
      return Plotly.react(el, [trace], layout, plotConfig);
    }
    if (select) select.addEventListener("change", function () { draw(select.value); });
    return draw("all");
  }

  var pending = blob.figures.map(function (fig) {
    var el = document.getElementById(fig.id);
    if (!fig.data.length) return Promise.resolve();
    try {
      if (fig.matrix) return drawMatrix(fig, el);
      return Plotly.newPlot(el, fig.data, layoutOf(fig), plotConfig);
    } catch (err) {
      console.error("figure " + fig.id + ": " + err);
      return Promise.resolve();
    }
  });
  Promise.all(pending).then(function () {
    document.body.setAttribute("data-rendered", String(pending.length));
  }, function (err) { console.error("report: " + err); });
})();
