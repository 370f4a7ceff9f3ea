/* casrepo's lineage graph: draws the JSON of `casrepo lineage --json` with Cytoscape.js
   and its dagre layout. Served by `casrepo serve` (a click opens the version) and
   inlined into the one-file page of `casrepo lineage --format html` (a click shows
   the node's details). Every text from the repository goes through textContent or
   the canvas, never through HTML. */
(function () {
  "use strict";

  var PALETTE = ["#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe", "#cffafe",
                 "#fee2e2", "#e0e7ff", "#ecfccb", "#f5f5f4"];
  var BIG = 300;  // above this many nodes, draw for speed rather than looks

  function colourOf(kind, kinds) {
    var i = kinds.indexOf(kind);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }

  function shortId(id) { return id.slice(0, 12); }

  function labelOf(n) {
    var first = n.label || shortId(n.id);
    if (first.length > 28) { first = first.slice(0, 27) + "\u2026"; }
    return first + "\n" + shortId(n.id) + " \u00b7 " + (n.kind || "?");
  }

  /* A layered layout for large graphs, where dagre takes seconds (about 8 s for 1,000
     nodes here): ranks by the longest path from the inputs, pulled towards what uses
     them, then a few barycentre sweeps to order each rank. Linear in the graph's
     size per sweep; dagre's is the better drawing, so small graphs keep it. */
  function layeredPositions(cy, width, height, rankGap, nodeGap) {
    var ids = [], preds = {}, succs = {}, indegree = {}, rank = {};
    cy.nodes().forEach(function (node) {
      var id = node.id();
      ids.push(id); preds[id] = []; succs[id] = []; rank[id] = 0;
    });
    cy.edges().forEach(function (edge) {
      var s = edge.source().id(), t = edge.target().id();
      if (s !== t) { succs[s].push(t); preds[t].push(s); }
    });
    var order = [];
    ids.forEach(function (id) { indegree[id] = preds[id].length; if (!indegree[id]) { order.push(id); } });
    for (var head = 0; head < order.length; head++) {
      var u = order[head];
      succs[u].forEach(function (v) {
        rank[v] = Math.max(rank[v], rank[u] + 1);
        if (--indegree[v] === 0) { order.push(v); }
      });
    }
    if (order.length < ids.length) {  // a cycle (damage): its nodes after the rest
      ids.forEach(function (id) { if (indegree[id] > 0) { order.push(id); } });
    }
    for (var k = order.length - 1; k >= 0; k--) {  // an input sits just before its first use
      var id = order[k], nearest = Infinity;
      succs[id].forEach(function (v) { nearest = Math.min(nearest, rank[v]); });
      if (nearest !== Infinity && nearest - 1 > rank[id]) { rank[id] = nearest - 1; }
    }
    var byRank = {};
    ids.forEach(function (id) { (byRank[rank[id]] = byRank[rank[id]] || []).push(id); });
    var layers = Object.keys(byRank).map(Number).sort(function (a, b) { return a - b; })
      .map(function (r) { return byRank[r]; });
    var pos = {};
    layers.forEach(function (layer) { layer.forEach(function (id, i) { pos[id] = i; }); });
    function sweep(layer, neighbours) {
      var centre = {};
      layer.forEach(function (id) {
        var sum = 0, n = 0;
        neighbours[id].forEach(function (v) { sum += pos[v]; n++; });
        centre[id] = n ? sum / n : pos[id];
      });
      layer.sort(function (a, b) { return centre[a] - centre[b] || pos[a] - pos[b]; });
      layer.forEach(function (id, i) { pos[id] = i; });
    }
    for (var round = 0; round < 4; round++) {
      for (var i = 1; i < layers.length; i++) { sweep(layers[i], preds); }
      for (var j = layers.length - 2; j >= 0; j--) { sweep(layers[j], succs); }
    }
    var positions = {};
    layers.forEach(function (layer, x) {
      layer.forEach(function (id, y) {
        positions[id] = { x: x * (width + rankGap), y: (y - (layer.length - 1) / 2) * (height + nodeGap) };
      });
    });
    return positions;
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value == null ? "" : String(value); }
  }

  function start() {
    var holder = document.getElementById("graph");
    var source = document.getElementById("lineage-data");
    if (!holder || !source || typeof window.cytoscape !== "function") { return; }
    var data = JSON.parse(source.textContent);
    var link = holder.getAttribute("data-link");  // null in the one-file page
    var big = data.nodes.length > BIG;
    var kinds = [];
    data.nodes.forEach(function (n) { if (kinds.indexOf(n.kind) < 0) { kinds.push(n.kind); } });
    kinds.sort();
    var byId = {};
    var elements = [];
    data.nodes.forEach(function (n) {
      byId[n.id] = n;
      var classes = [];
      if (n.id === data.root) { classes.push("root"); }
      if (n.newer) { classes.push("stale"); }
      elements.push({ group: "nodes", classes: classes.join(" "),
                      data: { id: n.id, label: labelOf(n), colour: colourOf(n.kind, kinds) } });
    });
    data.edges.forEach(function (e, i) {
      // A link goes from the made to what it was made from; the arrow shows the data's way.
      elements.push({ group: "edges", classes: e.rel,
                      data: { id: "e" + i, source: e.to, target: e.from, rel: e.rel } });
    });

    var cy = window.cytoscape({
      container: holder,
      elements: elements,
      minZoom: 0.02,
      maxZoom: 4,
      boxSelectionEnabled: false,
      autoungrabify: true,
      textureOnViewport: big,
      hideEdgesOnViewport: big,
      pixelRatio: big ? 1 : "auto",
      style: [
        { selector: "node", style: {
          "shape": "round-rectangle", "width": 170, "height": 46,
          "background-color": "data(colour)", "border-width": 1, "border-color": "#64748b",
          "label": "data(label)", "text-wrap": "wrap", "text-max-width": 162,
          "text-valign": "center", "text-halign": "center", "font-size": 13,
          "font-family": "sans-serif", "color": "#0f172a",
          "min-zoomed-font-size": 6 } },
        { selector: "node.root", style: { "border-width": 3, "border-color": "#1d4ed8" } },
        { selector: "node.stale", style: { "border-width": 3, "border-color": "#d97706",
                                           "border-style": "dashed" } },
        { selector: "node:selected, node.hover", style: { "overlay-opacity": 0.12,
                                                          "overlay-color": "#1d4ed8" } },
        // A large graph's edges are drawn the cheapest way (haystack: no arrows; its
        // layout puts every input to the left of what was made from it).
        { selector: "edge", style: big ? {
          "width": 1, "curve-style": "haystack", "line-color": "#94a3b8" } : {
          "width": 1.5, "curve-style": "bezier", "line-color": "#94a3b8",
          "target-arrow-shape": "triangle", "target-arrow-color": "#94a3b8", "arrow-scale": 0.9 } },
        { selector: "edge.previous", style: { "line-style": "dashed" } }
      ],
      layout: { name: "preset" }
    });

    var hook = { cy: cy, ready: false, nodes: data.nodes.length };
    hook.position = function (id) {
      // Where node ID is drawn, in the page's viewport coordinates (for a real click).
      var p = cy.getElementById(id).renderedPosition();
      var box = holder.getBoundingClientRect();
      return { x: box.left + p.x, y: box.top + p.y };
    };
    hook.tap = function (id) { cy.getElementById(id).emit("tap"); };
    window.casrepoGraph = hook;

    function show(id) {
      var n = byId[id];
      if (!n) { return; }
      document.getElementById("node-details").hidden = false;
      text("d-label", n.label || shortId(n.id));
      text("d-id", n.id);
      text("d-kind", n.kind);
      text("d-name", n.name);
      text("d-created", (n.created || "").replace("T", " ").replace("Z", " UTC"));
      text("d-message", n.message);
      text("d-refs", (n.refs || []).join(", "));
      text("d-newer", n.newer ? "yes: its name now points at " + shortId(n.newer) : "no");
      var wrap = document.getElementById("d-open-wrap");
      if (link) {
        document.getElementById("d-open").setAttribute("href", link + n.id);
        document.getElementById("d-lineage").setAttribute("href", link + n.id + "/lineage");
      } else if (wrap) {
        wrap.hidden = true;
      }
    }

    cy.on("mouseover", "node", function (evt) { evt.target.addClass("hover"); show(evt.target.id()); });
    cy.on("mouseout", "node", function (evt) { evt.target.removeClass("hover"); });
    cy.on("tap", "node", function (evt) {
      var id = evt.target.id();
      if (link) {
        window.location.assign(link + id);
      } else {
        cy.elements().unselect();
        evt.target.select();
        show(id);
      }
    });

    var positions = big ? layeredPositions(cy, 170, 46, 80, 14) : null;
    function fit() {
      if (!positions) {
        cy.fit(undefined, 24);
        if (cy.zoom() > 1.2) { cy.zoom(1.2); cy.center(); }
        return;
      }
      // From the layout's own extent: cy.fit would measure every label first.
      var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      Object.keys(positions).forEach(function (id) {
        var p = positions[id];
        x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x); y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
      });
      var w = holder.clientWidth, h = holder.clientHeight;
      var zoom = Math.min((w - 48) / (x1 - x0 + 170), (h - 48) / (y1 - y0 + 46), 1.2);
      zoom = Math.max(zoom, cy.minZoom());
      cy.viewport({ zoom: zoom, pan: { x: w / 2 - zoom * (x0 + x1) / 2, y: h / 2 - zoom * (y0 + y1) / 2 } });
    }
    if (!link) { text("click-hint", "click it to keep them shown"); }
    var fitButton = document.getElementById("fit");
    if (fitButton) { fitButton.addEventListener("click", fit); }
    var finder = document.getElementById("find-node");
    if (finder) {
      finder.addEventListener("input", function () {
        var q = finder.value.trim().toLowerCase();
        cy.elements().unselect();
        if (!q) { return; }
        var hits = cy.nodes().filter(function (node) {
          var n = byId[node.id()];
          return n.id.indexOf(q) === 0 || (n.label || "").toLowerCase().indexOf(q) >= 0;
        });
        if (hits.length) {
          hits.select();
          cy.animate({ center: { eles: hits[0] }, zoom: Math.max(cy.zoom(), 0.8) }, { duration: 200 });
          show(hits[0].id());
        }
      });
    }

    var layout = big
      ? cy.layout({ name: "preset", fit: false, positions: positions })
      : cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 14, rankSep: 50, edgeSep: 8,
                    animate: false, fit: false });
    layout.one("layoutstop", function () {
      fit();
      show(data.root);
      hook.readyAt = window.performance.now();  // ms since the page's navigation began
      hook.ready = true;
      holder.setAttribute("data-ready", "true");
    });
    layout.run();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
