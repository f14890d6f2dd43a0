// medground gallery: filter, page and draw the rows of window.MEDGROUND_ITEMS (see items.js).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const items = window.MEDGROUND_ITEMS || [];
  const gallery = document.getElementById("gallery");
  const pageSize = Math.max(1, parseInt(gallery.dataset.pageSize, 10) || 24);
  const selects = Array.from(document.querySelectorAll("#filters select"));
  let page = 0;

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
    if (item.outline) svg.appendChild(svgEl("path", { class: "outline", d: item.outline }));
    div.appendChild(svg);
    return div;
  }

  function queries(item) {
    if (!item.queries.length) return el("p", { class: "empty" }, "no queries");
    const list = el("ol", { class: "queries" });
    for (const q of item.queries) {
      const li = el("li", { class: "query" }, q.text);
      if (q.style) li.appendChild(el("span", { class: "style" }, ` (${q.style})`));
      const verdicts = el("div", { class: "verdicts" });
      for (const v of q.verdicts) {
        const chip = el("span", { class: v.passed ? "verdict" : "verdict failed",
                                  title: v.reason || "" },
                        `${v.passed ? "\u2713" : "\u2717"} ${v.stage}/${v.check}`);
        verdicts.appendChild(chip);
      }
      li.appendChild(verdicts);
      list.appendChild(li);
    }
    return list;
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
    gallery.replaceChildren(...slice.map(card));
    document.getElementById("page").textContent = `page ${page + 1} / ${pages}`;
    document.getElementById("count").textContent = `${shown.length} of ${items.length} items`;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }

  for (const s of selects) s.addEventListener("change", () => { page = 0; render(); });
  document.getElementById("prev").addEventListener("click", () => { page -= 1; render(); });
  document.getElementById("next").addEventListener("click", () => { page += 1; render(); });
  render();
})();
