// medground gallery: filter, page and draw the rows of window.MEDGROUND_ITEMS (see items.js).
// Outlines and queries live in details/NNNNN.js chunks, loaded (as scripts: file:// pages may
// not fetch) only for the rows of the page shown; #gallery[data-state] says when it is drawn.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const items = window.MEDGROUND_ITEMS || [];
  const gallery = document.getElementById("gallery");
  const pageSize = Math.max(1, parseInt(gallery.dataset.pageSize, 10) || 24);
  const chunkSize = parseInt(gallery.dataset.chunkSize, 10);
  const selects = Array.from(document.querySelectorAll("#filters select"));
  const chunks = new Map();  // chunk number -> promise of its details
  const loaded = [];
  let page = 0;
  let drawn = 0;  // the latest render; an older one that finishes later draws nothing

  window.MEDGROUND_DETAILS = (chunk, rows) => { loaded[chunk] = rows; };
  items.forEach((item, index) => { item.index = index; });

  function chunkOf(item) { return Math.floor(item.index / chunkSize); }

  function details(item) { return loaded[chunkOf(item)][item.index % chunkSize]; }

  function load(chunk) {
    if (!chunks.has(chunk)) {
      chunks.set(chunk, new Promise((resolve, reject) => {
        const script = el("script", { src: `details/${String(chunk).padStart(5, "0")}.js` });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`cannot load ${script.src}`));
        document.head.appendChild(script);
      }));
    }
    return chunks.get(chunk);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function frame(item) {
    const div = el("div", { class: "frame" });
    div.appendChild(el("img", { src: item.image, alt: item.id,
                                width: item.width, height: item.height }));
    const svg = svgEl("svg", { viewBox: `0 0 ${item.width} ${item.height}`,
                               preserveAspectRatio: "none" });
    const [x0, y0, x1, y1] = item.bbox;
    svg.appendChild(svgEl("rect", { class: "box", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
    const outline = details(item).outline;
    if (outline) svg.appendChild(svgEl("path", { class: "outline", d: outline }));
    div.appendChild(svg);
    return div;
  }

  // passed checks: one chip per stage (the checks and reasons on hover); failed checks: one
  // chip each, with the reason written out
  function verdicts(q) {
    const box = el("div", { class: "verdicts" });
    const passed = new Map();
    for (const v of q.verdicts) {
      if (v.passed) {
        if (!passed.has(v.stage)) passed.set(v.stage, []);
        passed.get(v.stage).push(`${v.check}: ${v.reason || "ok"}`);
      }
    }
    for (const [stage, checks] of passed) {
      box.appendChild(el("span", { class: "verdict", title: checks.join("\n") },
                         `\u2713 ${stage} (${checks.length})`));
    }
    for (const v of q.verdicts.filter((v) => !v.passed)) {
      box.appendChild(el("span", { class: "verdict failed", title: v.reason || "" },
                         `\u2717 ${v.stage}/${v.check}${v.reason ? ": " + v.reason : ""}`));
    }
    return box;
  }

  function queries(item) {
    const list = details(item).queries;
    if (!list.length) return el("p", { class: "empty" }, "no queries");
    const ol = el("ol", { class: "queries" });
    for (const q of list) {
      const li = el("li", { class: q.kept === false ? "query dropped" : "query" }, q.text);
      if (q.style) li.appendChild(el("span", { class: "style" }, ` (${q.style})`));
      li.appendChild(verdicts(q));
      ol.appendChild(li);
    }
    return ol;
  }

  function card(item) {
    const fig = el("figure", { class: `item ${item.status}`, "data-id": item.id,
                               "data-status": item.status });
    fig.style.margin = "0";
    fig.appendChild(frame(item));
    const meta = el("figcaption", { class: "meta" });
    meta.appendChild(el("span", { class: `badge ${item.status}` }, item.status));
    meta.appendChild(document.createTextNode(
      ` ${item.label_display} \u00b7 ${item.source} \u00b7 ${item.modality} \u00b7 ${item.split}` +
      (item.num_candidates > 1 ? ` \u00b7 ${item.num_candidates} candidates` : "")));
    meta.appendChild(el("div", { class: "id" }, item.id));
    if (item.status === "rejected") {
      meta.appendChild(el("div", { class: "reject" },
                          `rejected at ${item.rejected_stage}: ${item.rejected_reason}`));
    }
    meta.appendChild(queries(item));
    fig.appendChild(meta);
    return fig;
  }

  function filtered() {
    const active = selects.filter((s) => s.value !== "");
    return items.filter((item) => active.every((s) => String(item[s.dataset.facet]) === s.value));
  }

  function render() {
    const shown = filtered();
    const pages = Math.max(1, Math.ceil(shown.length / pageSize));
    page = Math.min(page, pages - 1);
    const slice = shown.slice(page * pageSize, (page + 1) * pageSize);
    document.getElementById("page").textContent = `page ${page + 1} / ${pages}`;
    document.getElementById("count").textContent = `${shown.length} of ${items.length} items`;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
    const mine = ++drawn;
    gallery.dataset.state = "loading";
    // after the current task: pages skipped in one go (e.g. many clicks) load nothing
    Promise.resolve()
      .then(() => mine === drawn && Promise.all([...new Set(slice.map(chunkOf))].map(load)))
      .then(() => {
        if (mine !== drawn) return;
        gallery.replaceChildren(...slice.map(card));
        gallery.dataset.state = "ready";
      });
  }

  for (const s of selects) s.addEventListener("change", () => { page = 0; render(); });
  document.getElementById("prev").addEventListener("click", () => { page -= 1; render(); });
  document.getElementById("next").addEventListener("click", () => { page += 1; render(); });
  render();
})();
