// The chart slot of app_pages/_chart.py: one plotly div per slot, kept across reruns, each new figure applied with
// Plotly.react, so the user's zoom, pan and hidden legend entries (layout.uirevision) survive a slider move.
// Streamlit calls this function again with every new `data` on the same parentElement: the div is found, not made.
const PLOTLY = "__frcnnPlotly";

function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window[PLOTLY]) {
    window[PLOTLY] = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.async = true;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window[PLOTLY] = undefined; reject(new Error("could not load " + url)); };
      document.head.appendChild(script);
    });
  }
  return window[PLOTLY];
}

function plain(value) {  // a typed array (customdata rows) as a plain array, for JSON
  if (value === undefined || value === null) return null;
  if (ArrayBuffer.isView(value)) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

function point(p) {
  return {curve_number: p.curveNumber, point_number: p.pointNumber, point_index: p.pointIndex,
          x: p.x, y: p.y, customdata: plain(p.customdata), legendgroup: p.data && p.data.legendgroup};
}

function selectionOf(event) {
  const out = {points: [], point_indices: [], box: [], lasso: []};
  if (!event) return out;
  for (const p of event.points || []) { out.points.push(point(p)); out.point_indices.push(p.pointIndex); }
  if (event.range && event.range.x) out.box.push({x: event.range.x, y: event.range.y});
  if (event.lassoPoints && event.lassoPoints.x) out.lasso.push({x: event.lassoPoints.x, y: event.lassoPoints.y});
  return out;
}

function bind(div) {
  const send = (selection) => {
    const c = div.__frcnn;  // the latest call's callbacks
    if (c && c.data.selectable) c.setStateValue("selection", selection);
  };
  div.on("plotly_selected", (event) => { if (event) send(selectionOf(event)); });
  div.on("plotly_click", (event) => {
    const c = div.__frcnn;
    if (c && c.data.selectable && (c.data.modes || []).includes("points")) send(selectionOf(event));
  });
}

function watchWidth(div, Plotly) {  // the column's width, not the window's: a chart drawn before its column had
  let width = div.clientWidth;      // its size, or a sidebar opened or closed, is laid out again
  const observer = new ResizeObserver(() => {
    if (div.clientWidth > 0 && div.clientWidth !== width) {
      width = div.clientWidth;
      Plotly.Plots.resize(div);
    }
  });
  observer.observe(div);
  div.__frcnnObserver = observer;
}

function groupOf(shape) { return shape.legendgroup || shape.name; }

// layout.uirevision keeps the legend toggles of traces across Plotly.react, not those of shapes (the outlines of
// boxes are path shapes, frcnn/viz/common.py): a shape whose legend toggle the user changed keeps it, by legend group
function keepShapeToggles(div, layout) {
  const full = div._fullLayout, asked = div.__askedShapes || [];
  const user = new Map();
  if (full && full.uirevision === layout.uirevision) {
    (full.shapes || []).forEach((s, i) => {
      const own = asked[i];
      if (own && own.group === groupOf(s) && own.visible !== s.visible) user.set(own.group, s.visible);
    });
  }
  div.__askedShapes = (layout.shapes || []).map((s) => ({group: groupOf(s), visible: s.visible === undefined ? true : s.visible}));
  for (const s of layout.shapes || []) if (user.has(groupOf(s))) s.visible = user.get(groupOf(s));
}

export default function (component) {
  const { data, parentElement } = component;
  if (data.preload) {  // app.py's first element: plotly.js loads while the server runs the page
    loadPlotly(data.plotly_url).catch(() => {});
    return () => {};
  }
  let div = parentElement.querySelector("div.frcnn-chart");
  if (!div) {
    div = document.createElement("div");
    div.className = "frcnn-chart";
    div.style.width = "100%";
    parentElement.appendChild(div);
  }
  div.__frcnn = component;
  div.dataset.key = data.key;
  div.dataset.bytes = String(data.figure.length);
  const fig = JSON.parse(data.figure);
  const layout = fig.layout || {};
  div.style.height = (layout.height || 450) + "px";
  const config = Object.assign({responsive: true}, data.config || {});
  const seq = (div.__seq = (div.__seq || 0) + 1);
  const called = performance.now();
  loadPlotly(data.plotly_url).then((Plotly) => {
    if (seq !== div.__seq) return;  // a newer figure came while plotly.js loaded
    const first = !div._fullLayout;
    const start = performance.now();
    keepShapeToggles(div, layout);
    Plotly.react(div, fig.data || [], layout, config).then(() => {
      // read by benchmarks/browser.py: when this figure came (the page's clock) and how long plotly took to draw it
      div.dataset.calledAt = String(called);
      div.dataset.drawMs = String(Math.round(performance.now() - start));
      if (first) {
        bind(div);
        watchWidth(div, Plotly);
      }
      div.dataset.revision = String(seq);  // read by the browser tests: this figure is drawn
    });
  }).catch((err) => { div.textContent = "The figure could not be drawn: " + err.message; });
  return () => {  // on unmount (or before the next figure): free plotly's listeners once the div is gone
    setTimeout(() => {
      if (!div.isConnected && window.Plotly) {
        if (div.__frcnnObserver) div.__frcnnObserver.disconnect();
        window.Plotly.purge(div);
      }
    }, 1000);
  };
}
