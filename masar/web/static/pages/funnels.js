/* Funnels: the builder (steps from the store's event names, filters, window, order, counting,
 * breakdown, date range, comparison, trend), templates, saved and shared funnels, the funnel chart
 * with the drop-off between steps, time to convert, conversion over time, and the people behind
 * any bar with their journeys.
 *
 * The URL holds everything shown: q is the funnel query without kind and source (what is POSTed
 * to /api/v1/query), step/status/period/value/offset the people listed, person the journey open.
 * Every number comes from the engine; this script only lays them out. */
(function () {
  "use strict";
  const M = window.masar;
  const { t, query, fmt, chart, drawn, table, busy, state, setState, exportButtons, getJson } = M;
  const $ = (id) => document.getElementById(id);
  const UNIT_SECONDS = { w: 604800, d: 86400, h: 3600, m: 60 };
  const PAGE = 25;
  const OTHER = "$other";
  const canEdit = M.config.role === "analyst" || M.config.role === "owner";
  // The stylesheet's fonts, named: ECharts measures legend and label text on a canvas, where
  // "inherit" means its own default font, and overlapping legends follow.
  const FONT = 'system-ui, -apple-system, "Segoe UI", "Noto Sans Arabic", "Noto Sans", Tahoma, sans-serif';
  const COLORS = { reached: "#1f4fd1", dropped: "#f4b2a8", prevReached: "#8eaaf0", prevDropped: "#f9dcd7" };

  let timezone = "UTC";
  let templates = [];
  let result = null; // the funnel on screen
  let shown = { q: null, people: null, person: null };
  let generation = 0;

  const source = () => state().source || M.config.source;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  // -- formatting -----------------------------------------------------------------------------------
  /* Seconds in the largest unit that reads well, in the page's locale ("5 min", "٣ ساعات"). */
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Number(seconds);
    const [unit, size] = s < 60 ? ["second", 1] : s < 3600 ? ["minute", 60] : s < 86400 ? ["hour", 3600] : ["day", 86400];
    return new Intl.NumberFormat(M.config.intl, { style: "unit", unit, unitDisplay: "short", maximumFractionDigits: 1 }).format(s / size);
  }

  /* A timestamp in the store's time zone (the engine's days are the store's days). */
  function when(iso) {
    if (!iso) return "–";
    const date = new Date(String(iso).replace(/(\.\d{3})\d+/, "$1"));
    return new Intl.DateTimeFormat(M.config.intl, { dateStyle: "medium", timeStyle: "short", timeZone: timezone }).format(date);
  }

  function stepLabel(step, steps) {
    if (result && result.order === "unordered") return t("Completed %(k)s of %(n)s steps", { k: fmt.number(step.step), n: fmt.number(steps.length) });
    const label = step.name || step.event;
    return t(label);
  }

  /* "2. Product Added", the name isolated so a right-to-left page keeps it whole and in place. */
  function numbered(n, name) {
    return fmt.number(n) + ". " + isolate(name);
  }

  function isolate(text) {
    return "\u2068" + text + "\u2069";
  }

  /* A property's name as the breakdown list labels it ("Device type"), else as given. */
  function propertyLabel(name) {
    const known = [...$("property-names").options].find((o) => o.value === name);
    return known ? known.textContent : name;
  }

  function valueLabel(value) {
    if (value === null || value === undefined) return t("(no value)");
    if (value === OTHER) return t("Other values");
    return t(String(value));
  }

  function unitsLabel(count) {
    const counting = (result && result.counting) || "uniques";
    const n = fmt.number(count);
    if (counting === "sessions") return t("%(n)s sessions", { n });
    if (counting === "totals") return t("%(n)s attempts", { n });
    return t("%(n)s people", { n });
  }

  // -- the definition in the URL ------------------------------------------------------------------
  function definition() {
    try {
      const parsed = JSON.parse(state().q || "null");
      return parsed && Array.isArray(parsed.steps) ? parsed : null;
    } catch (ignored) {
      return null;
    }
  }

  function defaultDefinition() {
    const first = templates.find((x) => x.name === "store") || templates[0];
    return { steps: first ? first.steps : [], window: "7d", order: "ordered", counting: "uniques", trend: "day" };
  }

  function windowSeconds(value) {
    if (typeof value === "number") return value;
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(String(value || "7d"));
    if (!match) return 7 * 86400;
    const unit = (match[2] || "s")[0].toLowerCase();
    return Math.round(Number(match[1]) * (unit === "s" ? 1 : UNIT_SECONDS[unit] || 1));
  }

  /* The previous period of a range: as many days, ending the day before it starts. */
  function previousPeriod(from, to) {
    const day = (iso) => Date.UTC(...iso.split("-").map((n, i) => Number(n) - (i === 1 ? 1 : 0)));
    const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
    const days = Math.round((day(to) - day(from)) / 86400000) + 1;
    return { from: iso(day(from) - days * 86400000), to: iso(day(from) - 86400000) };
  }

  // -- the builder ----------------------------------------------------------------------------------
  /* A step of the query ↔ the builder: its events (several: any of them) and filters (applied to
   * each of its events); fields the builder does not edit are kept as they were. */
  function stepModel(step) {
    if (typeof step === "string") return { name: "", events: [step], filters: [], extra: {} };
    const { name, event, any_of: anyOf, filters, ...extra } = step;
    const events = anyOf ? anyOf.map((m) => m.event) : [event];
    return { name: name || "", events, filters: (anyOf ? anyOf[0].filters : filters) || [], extra };
  }

  function queryStep(model) {
    const out = Object.assign({}, model.extra);
    if (model.name) out.name = model.name;
    if (model.events.length === 1) {
      out.event = model.events[0];
      if (model.filters.length) out.filters = model.filters;
    } else {
      out.any_of = model.events.map((event) => (model.filters.length ? { event, filters: model.filters } : { event }));
    }
    return out;
  }

  function addEvent(li, name) {
    const node = $("event-template").content.firstElementChild.cloneNode(true);
    node.querySelector(".step-event").value = name || "";
    li.querySelector(".step-events").appendChild(node);
    return node;
  }

  function addFilter(li, filter) {
    const node = $("filter-template").content.firstElementChild.cloneNode(true);
    const f = filter || {};
    node.querySelector(".filter-property").value = f.property || "";
    node.querySelector(".filter-op").value = f.op || "eq";
    node.querySelector(".filter-value").value = Array.isArray(f.value) ? f.value.join(", ") : f.value === undefined || f.value === null ? "" : String(f.value);
    li.querySelector(".step-filters").appendChild(node);
    syncFilter(node);
    return node;
  }

  function syncFilter(node) {
    const noValue = ["is_set", "is_not_set"].includes(node.querySelector(".filter-op").value);
    const input = node.querySelector(".filter-value");
    input.disabled = noValue;
    if (noValue) input.value = "";
  }

  function addStep(model) {
    const li = $("step-template").content.firstElementChild.cloneNode(true);
    const m = model || { name: "", events: [""], filters: [], extra: {} };
    li.extra = m.extra;
    li.querySelector(".step-name").value = m.name;
    m.events.forEach((e) => addEvent(li, e));
    m.filters.forEach((f) => addFilter(li, f));
    $("steps").appendChild(li);
    renumber();
    return li;
  }

  function renumber() {
    const items = [...$("steps").children];
    items.forEach((li, i) => {
      const n = fmt.number(i + 1);
      li.querySelector(".step-legend").textContent = t("Step %(n)s", { n });
      li.querySelector(".move-up").disabled = i === 0;
      li.querySelector(".move-down").disabled = i === items.length - 1;
      li.querySelector(".remove-step").disabled = items.length <= 2;
      const picks = li.querySelectorAll(".event-pick");
      picks.forEach((p, k) => {
        p.querySelector(".or").hidden = k === 0;
        p.querySelector(".remove-event").hidden = picks.length === 1;
      });
      li.querySelectorAll(".filter").forEach((f, k) => f.setAttribute("aria-label", t("Filter %(k)s of step %(n)s", { k: fmt.number(k + 1), n })));
    });
  }

  function renderBuilder(def) {
    $("steps").replaceChildren();
    def.steps.map(stepModel).forEach((m) => addStep(m));
    const seconds = windowSeconds(def.window);
    const unit = ["d", "h", "m"].find((u) => seconds % UNIT_SECONDS[u] === 0) || "m";
    $("window-value").value = unit === "m" ? Math.max(1, Math.round(seconds / 60)) : seconds / UNIT_SECONDS[unit];
    $("window-unit").value = unit;
    $("order").value = def.order || "ordered";
    $("counting").value = def.counting || "uniques";
    const breakdown = def.breakdown;
    $("breakdown").value = breakdown ? (typeof breakdown === "string" ? breakdown : breakdown.property) : "";
    $("trend").value = def.trend || "";
    $("from").value = (def.from || "").slice(0, 10);
    $("to").value = (def.to || "").slice(0, 10);
    $("compare").checked = Boolean(def.compare);
    $("builder-error").hidden = true;
    const same = templates.find((x) => JSON.stringify(x.steps.map(stepModel)) === JSON.stringify(def.steps.map(stepModel)));
    const fallback = templates.find((x) => x.name === "store");
    if (same || fallback) $("template").value = (same || fallback).name;
  }

  function filterValue(op, text) {
    if (op === "is_set" || op === "is_not_set") return undefined;
    if (op === "in" || op === "not_in") return text.split(",").map((v) => v.trim()).filter(Boolean);
    if (["gt", "gte", "lt", "lte"].includes(op)) return text.trim() === "" ? "" : Number(text);
    return text.trim();
  }

  /* The builder's funnel, or an error sentence for the first thing missing. */
  function readBuilder(previous) {
    const steps = [...$("steps").children].map((li, i) => {
      const events = [...li.querySelectorAll(".step-event")].map((input) => input.value.trim());
      if (events.some((e) => !e)) throw new Error(t("Pick an event for step %(n)s.", { n: fmt.number(i + 1) }));
      const filters = [...li.querySelectorAll(".filter")].map((node) => {
        const property = node.querySelector(".filter-property").value.trim();
        const op = node.querySelector(".filter-op").value;
        if (!property) throw new Error(t("Name the property of each filter of step %(n)s.", { n: fmt.number(i + 1) }));
        const f = { property, op };
        const value = filterValue(op, node.querySelector(".filter-value").value);
        if (value !== undefined) f.value = value;
        return f;
      });
      return queryStep({ name: li.querySelector(".step-name").value.trim(), events, filters, extra: li.extra || {} });
    });
    const value = Number($("window-value").value);
    if (!(value > 0)) throw new Error(t("The conversion window must be a positive number."));
    const def = Object.assign({}, previous || {}, {
      steps, window: value + $("window-unit").value, order: $("order").value, counting: $("counting").value,
    });
    const breakdown = $("breakdown").value.trim();
    const before = previous && previous.breakdown;
    if (!breakdown) delete def.breakdown;
    else def.breakdown = before && typeof before === "object" ? Object.assign({}, before, { property: breakdown }) : breakdown;
    for (const key of ["trend", "from", "to"]) {
      const v = $(key).value;
      if (v) def[key] = v;
      else delete def[key];
    }
    if ($("compare").checked) {
      if (!def.from || !def.to) throw new Error(t("Pick a date range to compare it with the previous period."));
      def.compare = previousPeriod(def.from, def.to);
    } else {
      delete def.compare;
    }
    return def;
  }

  function apply(def) {
    setState({ q: def, step: null, status: null, period: null, value: null, offset: null, person: null });
  }

  function wireBuilder() {
    $("steps").addEventListener("click", (e) => {
      const button = e.target.closest("button");
      if (!button) return;
      const li = button.closest("li");
      if (button.classList.contains("add-event")) addEvent(li, "").querySelector("input").focus();
      else if (button.classList.contains("remove-event")) {
        button.closest(".event-pick").remove();
        li.querySelector(".step-event").focus();
      } else if (button.classList.contains("add-filter")) addFilter(li).querySelector("input").focus();
      else if (button.classList.contains("remove-filter")) {
        button.closest(".filter").remove();
        li.querySelector(".add-filter").focus();
      } else if (button.classList.contains("move-up") && li.previousElementSibling) {
        li.previousElementSibling.before(li);
        renumber();
        li.querySelector(li.querySelector(".move-up").disabled ? ".move-down" : ".move-up").focus();
        return;
      } else if (button.classList.contains("move-down") && li.nextElementSibling) {
        li.nextElementSibling.after(li);
        renumber();
        li.querySelector(li.querySelector(".move-down").disabled ? ".move-up" : ".move-down").focus();
        return;
      } else if (button.classList.contains("remove-step")) {
        const next = li.nextElementSibling || li.previousElementSibling;
        li.remove();
        if (next) next.querySelector(".step-event").focus();
      }
      renumber();
    });
    $("steps").addEventListener("change", (e) => {
      if (e.target.classList.contains("filter-op")) syncFilter(e.target.closest(".filter"));
    });
    $("add-step").addEventListener("click", () => addStep().querySelector(".step-event").focus());
    $("builder").addEventListener("submit", (e) => {
      e.preventDefault();
      const error = $("builder-error");
      try {
        const def = readBuilder(definition());
        error.hidden = true;
        apply(def);
      } catch (problem) {
        error.textContent = problem.message;
        error.hidden = false;
      }
    });
    $("template-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const chosen = templates.find((x) => x.name === $("template").value);
      if (chosen) apply(Object.assign({}, definition() || defaultDefinition(), { steps: chosen.steps }));
    });
  }

  // -- the funnel -----------------------------------------------------------------------------------
  function summary(r) {
    const steps = r.steps;
    const last = steps[steps.length - 1];
    const prev = r.compare ? r.compare.steps : null;
    const prevLast = prev ? prev[prev.length - 1] : null;
    const cards = [
      ["entered", t("Entered the funnel"), fmt.number(steps[0].count), prev && fmt.number(prev[0].count)],
      ["converted", t("Reached the last step"), fmt.number(last.count), prev && fmt.number(prevLast.count)],
      ["conversion", t("Overall conversion"), fmt.percent(last.conversion_from_start), prev && fmt.percent(prevLast.conversion_from_start)],
      ["median", t("Median time to convert"), duration(r.time_to_convert.median_seconds),
        prev && duration(r.compare.time_to_convert.median_seconds)],
    ];
    $("summary").replaceChildren(...cards.map(([name, label, value, before]) => {
      const box = el("article", { className: "kpi" }, el("div", { className: "label", textContent: label }), el("div", { className: "value", textContent: value }));
      box.dataset.metric = name;
      if (before !== null && before !== undefined && before !== false) box.appendChild(el("div", { className: "change", textContent: t("Previous period: %(value)s", { value: before }) }));
      return box;
    }));
    const range = r.range.from ? t("%(from)s to %(to)s", { from: fmt.date(r.range.from.slice(0, 10)), to: fmt.date((r.range.to || r.range.from).slice(0, 10)) }) : t("All data");
    const parts = [range, t("window %(w)s", { w: duration(r.window_seconds) })];
    if (r.compare) parts.push(t("compared with %(from)s to %(to)s", { from: fmt.date(r.compare.range.from.slice(0, 10)), to: fmt.date(r.compare.range.to.slice(0, 10)) }));
    $("range-note").textContent = parts.join(" · ");
  }

  function funnelChart(r) {
    const labels = r.steps.map((s) => stepLabel(s, r.steps));
    const series = [];
    const bar = (id, name, data, color, extra) => Object.assign({ id, name, type: "bar", data, itemStyle: { color }, emphasis: { focus: "series" }, cursor: "pointer" }, extra || {});
    const dropLabel = { show: true, position: "top", color: "#b42318", formatter: (p) => (p.dataIndex === 0 ? "" : fmt.change(-r.steps[p.dataIndex].drop_off_rate)) };
    if (!r.breakdown.length) {
      series.push(bar("reached", t("Reached the step"), r.steps.map((s) => s.count), COLORS.reached,
        { stack: "this", label: { show: true, position: "insideBottom", color: "#fff", formatter: (p) => fmt.number(p.value) } }));
      series.push(bar("dropped", t("Dropped off"), r.steps.map((s) => s.drop_off), COLORS.dropped, { stack: "this", label: dropLabel }));
      if (r.compare) {
        const prev = r.compare.steps;
        const decal = { symbol: "rect", dashArrayX: [1, 0], dashArrayY: [3, 3], rotation: -Math.PI / 4, color: "rgba(255,255,255,.5)" };
        series.push(bar("prev-reached", t("Reached, previous period"), prev.map((s) => s.count), COLORS.prevReached, { stack: "previous", itemStyle: { color: COLORS.prevReached, decal } }));
        series.push(bar("prev-dropped", t("Dropped off, previous period"), prev.map((s) => s.drop_off), COLORS.prevDropped,
          { stack: "previous", label: { show: true, position: "top", color: "#7a271a", formatter: (p) => (p.dataIndex === 0 ? "" : fmt.change(-prev[p.dataIndex].drop_off_rate)) } }));
      }
    } else {
      r.breakdown.forEach((b, i) => {
        const listable = b.value !== null && b.value !== OTHER;
        series.push(bar("value:" + i, valueLabel(b.value), b.steps.map((s) => s.count), undefined, { cursor: listable ? "pointer" : "default", itemStyle: undefined }));
      });
    }
    chart($("funnel-chart"), {
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: "item", confine: true, formatter: (p) => tooltip(r, p) },
      legend: { top: 0, type: "scroll", itemGap: 24 },
      grid: { left: 16, right: 16, top: 40, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: labels, axisLabel: { interval: 0, width: 110, overflow: "break" } },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt.number(v) } },
      series,
      ariaLabel: t("Funnel of %(n)s steps: %(first)s at step 1, %(last)s at the last step", {
        n: fmt.number(r.steps.length), first: fmt.number(r.steps[0].count), last: fmt.number(r.steps[r.steps.length - 1].count),
      }),
    }).then((instance) => {
      instance.off("click");
      instance.on("click", (p) => onBar(r, p));
    });
  }

  /* A bar lists its people: reached, or dropped off at that step; of the previous period; of one
   * breakdown value (not of "no value" or "other values", which the people query cannot name). */
  function onBar(r, p) {
    const step = p.dataIndex + 1;
    if (p.seriesId === "reached") listPeople({ step, status: "reached" });
    else if (p.seriesId === "dropped" && step > 1) listPeople({ step, status: "dropped" });
    else if (p.seriesId === "prev-reached") listPeople({ step, status: "reached", period: "previous" });
    else if (p.seriesId === "prev-dropped" && step > 1) listPeople({ step, status: "dropped", period: "previous" });
    else if (p.seriesId.startsWith("value:")) {
      const value = r.breakdown[Number(p.seriesId.slice(6))].value;
      if (value !== null && value !== OTHER) listPeople({ step, status: "reached", value });
    }
  }

  function tooltip(r, p) {
    const i = p.dataIndex;
    const id = p.seriesId;
    let rows = r.steps;
    if (id.startsWith("prev-")) rows = r.compare.steps;
    if (id.startsWith("value:")) rows = r.breakdown[Number(id.slice(6))].steps;
    const s = rows[i];
    const lines = [`<strong>${esc(t("Step %(n)s", { n: fmt.number(i + 1) }))}: ${esc(stepLabel(s, rows))}</strong>`];
    if (id.startsWith("value:")) lines.push(esc(valueLabel(r.breakdown[Number(id.slice(6))].value)));
    if (id.endsWith("dropped")) {
      lines.push(esc(t("Dropped off: %(n)s (%(rate)s)", { n: fmt.number(s.drop_off), rate: fmt.percent(s.drop_off_rate) })));
    } else {
      lines.push(esc(t("Reached: %(n)s", { n: fmt.number(s.count) })));
      lines.push(esc(t("From step 1: %(rate)s", { rate: fmt.percent(s.conversion_from_start) })));
      if (i > 0) lines.push(esc(t("From the previous step: %(rate)s", { rate: fmt.percent(s.conversion_from_previous) })));
      if (s.median_seconds_from_previous !== null) lines.push(esc(t("Median time from the previous step: %(d)s", { d: duration(s.median_seconds_from_previous) })));
    }
    if (id.startsWith("prev-")) lines.push(esc(t("Previous period")));
    return lines.join("<br>");
  }

  function peopleButton(count, label, spec) {
    if (!count) return fmt.number(count);
    const button = el("button", { type: "button", className: "link count", textContent: fmt.number(count) });
    button.setAttribute("aria-label", label);
    button.addEventListener("click", () => listPeople(spec));
    return button;
  }

  function stepsTable(r) {
    const prev = r.compare ? r.compare.steps : null;
    const rows = r.steps.map((s, i) => Object.assign({}, s, { label: numbered(s.step, stepLabel(s, r.steps)), prev: prev ? prev[i] : null }));
    const columns = [
      { key: "label", label: t("Step") },
      { key: "count", label: t("Reached"), unit: "count",
        format: (v, row) => peopleButton(v, t("List the %(n)s who reached step %(k)s", { n: unitsLabel(v), k: fmt.number(row.step) }), { step: row.step, status: "reached" }) },
      { key: "conversion_from_start", label: t("From step 1"), unit: "rate" },
      { key: "conversion_from_previous", label: t("From the previous step"), unit: "rate" },
      { key: "drop_off", label: t("Dropped off"), unit: "count",
        format: (v, row) => (row.step === 1 ? "–" : peopleButton(v, t("List the %(n)s who dropped off at step %(k)s", { n: unitsLabel(v), k: fmt.number(row.step) }), { step: row.step, status: "dropped" })) },
      { key: "drop_off_rate", label: t("Drop-off rate"), unit: "rate", format: (v, row) => (row.step === 1 ? "–" : fmt.percent(v)) },
      { key: "median_seconds_from_previous", label: t("Median time from the previous step"), unit: "count", format: (v) => duration(v) },
    ];
    if (prev) {
      columns.push(
        { key: "prev", label: t("Reached, previous period"), unit: "count",
          format: (v, row) => peopleButton(v.count, t("List the %(n)s who reached step %(k)s in the previous period", { n: unitsLabel(v.count), k: fmt.number(row.step) }),
            { step: row.step, status: "reached", period: "previous" }) },
        { key: "prev", label: t("From step 1, previous period"), unit: "rate", format: (v) => fmt.percent(v.conversion_from_start) },
      );
    }
    const tableEl = table($("steps-table"), columns, rows, { caption: t("Steps of the funnel") });
    tableEl.querySelectorAll("tbody tr").forEach((tr, i) => (tr.dataset.step = i + 1));
  }

  function breakdownTable(r) {
    const section = $("breakdown-section");
    section.hidden = !r.breakdown.length;
    if (!r.breakdown.length) return;
    $("breakdown-title").textContent = t("Broken down by %(property)s", { property: propertyLabel(r.breakdown_property) });
    const columns = [{ key: "value", label: t("Value"), format: (v) => valueLabel(v) }];
    r.steps.forEach((s, i) => columns.push({
      key: "step" + i, label: numbered(i + 1, stepLabel(s, r.steps)), unit: "count",
      format: (v, row) => (row.value === null || row.value === OTHER ? fmt.number(v)
        : peopleButton(v, t("List the %(n)s of %(value)s who reached step %(k)s", { n: unitsLabel(v), value: valueLabel(row.value), k: fmt.number(i + 1) }),
          { step: i + 1, status: "reached", value: row.value })),
    }));
    columns.push({ key: "conversion", label: t("Overall conversion"), unit: "rate" });
    const rows = r.breakdown.map((b) => {
      const row = { value: b.value, conversion: b.steps[b.steps.length - 1].conversion_from_start };
      b.steps.forEach((s, i) => (row["step" + i] = s.count));
      return row;
    });
    table($("breakdown-table"), columns, rows, { caption: t("Units at each step, by value") });
  }

  function binLabel(b) {
    return t("up to %(d)s", { d: duration(b.to_seconds) });
  }

  function binRange(b) {
    return t("%(from)s to %(to)s", { from: duration(b.from_seconds), to: duration(b.to_seconds) });
  }

  function timeToConvert(r) {
    const ttc = r.time_to_convert;
    $("ttc-note").textContent = ttc.converted
      ? t("%(n)s converted: median %(median)s, average %(average)s, 90th percentile %(p90)s", {
        n: fmt.number(ttc.converted), median: duration(ttc.median_seconds), average: duration(ttc.average_seconds), p90: duration(ttc.p90_seconds),
      })
      : t("Nobody reached the last step in this range.");
    const series = [{ id: "this", name: t("This period"), type: "bar", data: ttc.bins.map((b) => b.count) }];
    if (r.compare) series.push({ id: "previous", name: t("Previous period"), type: "bar", data: r.compare.time_to_convert.bins.map((b) => b.count) });
    chart($("ttc-chart"), {
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: "axis", formatter: (items) => esc(binRange(ttc.bins[items[0].dataIndex])) + "<br>" +
        items.map((i) => esc(i.seriesName + ": " + fmt.number(i.value))).join("<br>") },
      legend: r.compare ? { top: 0, itemGap: 24 } : undefined,
      grid: { left: 36, right: 36, top: r.compare ? 32 : 12, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: ttc.bins.map(binLabel), axisLabel: { interval: 0, rotate: 30, fontSize: 10 } },
      yAxis: { type: "value", minInterval: 1, axisLabel: { formatter: (v) => fmt.number(v) } },
      series,
      ariaLabel: $("ttc-note").textContent,
    });
  }

  function trendChart(r) {
    const box = $("trend-chart");
    if (!r.trend.length) {
      const instance = window.echarts && window.echarts.getInstanceByDom(box);
      if (instance) instance.dispose();
      box.hidden = true;
      $("trend-export").hidden = true;
      $("trend-note").textContent = (definition() || {}).trend
        ? t("Nobody entered the funnel in this range.")
        : t("Choose a trend period in the options to see conversion over time.");
      return;
    }
    box.hidden = false;
    $("trend-export").hidden = false;
    $("trend-note").textContent = t("People entering the funnel per period, and the share of them who reached the last step.");
    chart(box, {
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: "axis" },
      legend: { top: 0, itemGap: 24 },
      grid: { left: 16, right: 16, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: r.trend.map((p) => fmt.date(p.period)) },
      yAxis: [
        { type: "value", minInterval: 1, axisLabel: { formatter: (v) => fmt.number(v) } },
        { type: "value", position: "right", axisLabel: { formatter: (v) => fmt.percent(v) }, splitLine: { show: false } },
      ],
      series: [
        { name: t("Entered"), type: "bar", data: r.trend.map((p) => p.entered), itemStyle: { color: COLORS.prevReached },
          tooltip: { valueFormatter: (v) => fmt.number(v) } },
        { name: t("Conversion"), type: "line", yAxisIndex: 1, data: r.trend.map((p) => p.conversion), itemStyle: { color: COLORS.reached },
          tooltip: { valueFormatter: (v) => fmt.percent(v) } },
      ],
      ariaLabel: t("Conversion over time"),
    });
  }

  /* CSV and Excel of what each chart and table shows: the funnel's steps (with the breakdown and
   * the compared range) through the common export, its trend and time to convert through the
   * funnel export's other tables. */
  function exports(q) {
    const parts = [["steps-export", null], ["breakdown-export", null], ["ttc-export", "time_to_convert"], ["trend-export", "trend"]];
    parts.forEach(([id, part]) => {
      const box = $(id);
      box.replaceChildren();
      exportButtons(box, () => q, part ? "/api/v1/funnels/export?part=" + part : undefined);
    });
  }

  async function runFunnel(def, my) {
    delete document.body.dataset.loaded;
    const q = Object.assign({ kind: "funnel" }, def);
    let r;
    try {
      r = await busy($("funnel-status"), query(q));
    } catch (error) {
      $("funnel-results").hidden = true; // the error says why; no figures of another funnel beside it
      return false;
    }
    if (my !== generation) return false;
    result = r;
    $("funnel-status").replaceChildren();
    $("funnel-results").hidden = false;
    summary(r);
    funnelChart(r);
    stepsTable(r);
    breakdownTable(r);
    timeToConvert(r);
    trendChart(r);
    exports(q);
    await drawn();
    if (my !== generation) return false;
    document.body.dataset.loaded = "funnels";
    return true;
  }

  // -- people and journeys ------------------------------------------------------------------------
  function listPeople(spec) {
    setState({ step: spec.step, status: spec.status, period: spec.period || null, value: spec.value === undefined ? null : spec.value, offset: null, person: null });
  }

  function peopleQuery(def, s) {
    const q = Object.assign({}, def, { kind: "funnel_people", step: Number(s.step), status: s.status === "dropped" ? "dropped" : "reached" });
    delete q.compare;
    delete q.trend;
    if (s.period === "previous" && def.compare) {
      q.from = def.compare.from;
      q.to = def.compare.to;
    }
    if (s.value !== undefined && def.breakdown) q.breakdown_value = s.value;
    return q;
  }

  async function runPeople(def, s, my, focus) {
    const panel = $("people-panel");
    delete document.body.dataset.people;
    if (!s.step || !result) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const n = Number(s.step);
    const step = result.steps[n - 1];
    const name = step ? stepLabel(step, result.steps) : "";
    const title = s.status === "dropped"
      ? t("Dropped off at step %(n)s: %(name)s", { n: fmt.number(n), name: isolate(name) })
      : t("Reached step %(n)s: %(name)s", { n: fmt.number(n), name: isolate(name) });
    const qualifiers = [];
    if (s.value !== undefined) qualifiers.push(t("%(property)s is %(value)s", { property: propertyLabel(result.breakdown_property || ""), value: valueLabel(s.value) }));
    if (s.period === "previous") qualifiers.push(t("previous period"));
    $("people-title").textContent = qualifiers.length ? title + " (" + qualifiers.join(", ") + ")" : title;
    const offset = Math.max(0, Number(s.offset) || 0);
    const pq = peopleQuery(def, s);
    $("people-table").replaceChildren();
    $("people-total").textContent = "";
    let res;
    try {
      res = await busy($("people-status"), query(Object.assign({}, pq, { limit: PAGE, offset })));
    } catch (error) {
      return;
    }
    if (my !== generation) return;
    $("people-status").replaceChildren();
    panel.dataset.total = res.total;
    $("people-total").textContent = t("In all: %(n)s", { n: unitsLabel(res.total) });
    const steps = result.steps;
    const tableEl = table($("people-table"), [
      { key: "person_id", label: t("Person") },
      { key: "user_id", label: t("User id"), format: (v) => v || "–" },
      { key: "anonymous_ids", label: t("Anonymous id"), format: (v) => (v.length ? el("span", { className: "ltr", title: v.join(" "), textContent: v[0].slice(0, 8) + "…" + (v.length > 1 ? " +" + fmt.number(v.length - 1) : "") }) : "–") },
      { key: "deepest_step", label: t("Deepest step"), format: (v) => numbered(v, steps[v - 1] ? stepLabel(steps[v - 1], steps) : "") },
      { key: "last_step_at", label: t("Reached the deepest step at"), format: (v) => when(v) },
      { key: "person_id", label: t("Journey"), format: (v) => {
        const b = el("button", { type: "button", className: "link", textContent: t("Open journey") });
        b.setAttribute("aria-label", t("Open the journey of person %(id)s", { id: v }));
        b.addEventListener("click", () => setState({ person: v }));
        return b;
      } },
    ], res.people, { caption: t("Showing %(from)s to %(to)s of %(total)s", { from: fmt.number(res.people.length ? offset + 1 : 0), to: fmt.number(offset + res.people.length), total: fmt.number(res.total) }) });
    tableEl.querySelectorAll("tbody tr").forEach((tr, i) => (tr.dataset.person = res.people[i].person_id));
    $("people-prev").disabled = offset === 0;
    $("people-next").disabled = offset + PAGE >= res.total;
    $("people-page").textContent = t("Page %(page)s of %(pages)s", { page: fmt.number(Math.floor(offset / PAGE) + 1), pages: fmt.number(Math.max(1, Math.ceil(res.total / PAGE))) });
    const exp = $("people-export");
    exp.replaceChildren();
    exportButtons(exp, () => Object.assign({}, pq, { limit: 100000, offset: 0 }));
    document.body.dataset.people = "loaded";
    if (focus) $("people-title").focus();
  }

  function stepNumbersOf(event) {
    const def = definition();
    if (!def) return "";
    const numbers = [];
    def.steps.map(stepModel).forEach((m, i) => {
      if (m.events.includes(event)) numbers.push(fmt.number(i + 1));
    });
    return numbers.join(", ");
  }

  function details(properties) {
    return Object.entries(properties || {}).slice(0, 4)
      .map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v).slice(0, 60) : String(v)))
      .join(" · ");
  }

  async function runJourney(person, my, focus) {
    const panel = $("journey-panel");
    delete document.body.dataset.journey;
    if (!person) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    $("journey-title").textContent = t("Journey of person %(id)s", { id: person });
    $("journey-profile").href = "/customers?" + new URLSearchParams({ source: source(), tab: "profile", person, by: "person" });
    $("journey-facts").replaceChildren();
    $("journey-table").replaceChildren();
    $("journey-note").textContent = "";
    const cq = { kind: "customer", person: Number(person), by: "person", predict: false, timeline_limit: 200 };
    let c;
    try {
      c = await busy($("journey-status"), query(cq));
    } catch (error) {
      return;
    }
    if (my !== generation) return;
    $("journey-status").replaceChildren();
    const facts = [
      [t("User id"), c.identity.user_id || "–"],
      [t("Email"), c.identity.email || "–"],
      [t("First seen"), when(c.first_seen)],
      [t("First channel"), c.first_channel ? t(c.first_channel) : "–"],
      [t("Orders"), fmt.number(c.value.orders)],
      [t("Lifetime value"), fmt.money(c.value.lifetime_value)],
    ];
    $("journey-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
    const events = c.timeline.slice().reverse();
    $("journey-note").textContent = c.timeline_truncated
      ? t("The latest %(shown)s of %(n)s events, oldest first. Highlighted: events of the funnel's steps.", { shown: fmt.number(events.length), n: fmt.number(c.events) })
      : t("All %(n)s events, oldest first. Highlighted: events of the funnel's steps.", { n: fmt.number(c.events) });
    const tableEl = table($("journey-table"), [
      { key: "ts", label: t("Time"), format: (v) => when(v) },
      { key: "event", label: t("Event") },
      { key: "event", label: t("Funnel step"), format: (v) => stepNumbersOf(v) || "–" },
      { key: "channel", label: t("Channel"), format: (v) => (v ? t(v) : "–") },
      { key: "device_type", label: t("Device"), format: (v) => (v ? t(v) : "–") },
      { key: "country", label: t("Country"), format: (v) => v || "–" },
      { key: "properties", label: t("Details"), format: (v) => el("span", { className: "ltr", textContent: details(v) }) },
    ], events, { caption: t("Events of person %(id)s", { id: person }) });
    tableEl.querySelectorAll("tbody tr").forEach((tr, i) => {
      if (stepNumbersOf(events[i].event)) tr.classList.add("step-event");
    });
    const exp = $("journey-export");
    exp.replaceChildren();
    exportButtons(exp, () => Object.assign({}, cq, { timeline_limit: 10000 }));
    document.body.dataset.journey = String(person);
    if (focus) $("journey-title").focus();
  }

  // -- saved funnels and sharing --------------------------------------------------------------------
  async function send(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json()).error.message;
      } catch (ignored) {
        /* keep the status text */
      }
      throw new Error(message);
    }
    return response;
  }

  function funnelLink(def, name) {
    const params = new URLSearchParams({ source: source(), q: JSON.stringify(def) });
    if (name) params.set("saved", name);
    return "/funnels?" + params;
  }

  async function loadSaved() {
    const list = await getJson("/api/v1/saved-funnels?source=" + encodeURIComponent(source()));
    $("saved-empty").hidden = list.length > 0;
    $("saved-list").replaceChildren(...list.map((f) => {
      const link = el("a", { href: funnelLink(f.definition, f.name), textContent: f.name });
      const meta = el("span", { className: "muted", textContent: f.saved_by
        ? t("saved by %(who)s on %(date)s", { who: f.saved_by, date: when(f.updated_at) })
        : t("saved on %(date)s", { date: when(f.updated_at) }) });
      const item = el("li", {}, link, " ", meta);
      item.dataset.name = f.name;
      if (canEdit) {
        const remove = el("button", { type: "button", className: "link", textContent: t("Delete") });
        remove.setAttribute("aria-label", t("Delete the saved funnel %(name)s", { name: f.name }));
        remove.addEventListener("click", async () => {
          if (!confirm(t("Delete the saved funnel %(name)s?", { name: f.name }))) return;
          try {
            await send("DELETE", "/api/v1/saved-funnels?" + new URLSearchParams({ source: source(), name: f.name }));
            $("saved-status").textContent = t("Deleted %(name)s.", { name: f.name });
            await loadSaved();
          } catch (error) {
            $("saved-status").textContent = error.message;
          }
        });
        item.append(" ", remove);
      }
      return item;
    }));
  }

  function wireSaved() {
    const form = $("save-form");
    if (form) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const name = $("save-name").value.trim();
        const def = definition();
        if (!name || !def) return;
        try {
          await send("POST", "/api/v1/saved-funnels?source=" + encodeURIComponent(source()), { name, definition: def });
          $("saved-status").textContent = t("Saved as %(name)s.", { name });
          await loadSaved();
        } catch (error) {
          $("saved-status").textContent = error.message;
        }
      });
      if (state().saved) $("save-name").value = state().saved;
    }
    $("copy-link").addEventListener("click", async () => {
      const input = $("share-url");
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        $("saved-status").textContent = t("Link copied.");
      } catch (ignored) {
        $("saved-status").textContent = t("Select the link and copy it.");
      }
    });
  }

  // -- the page ----------------------------------------------------------------------------------
  async function load(focus) {
    const my = ++generation;
    const s = state();
    const def = definition();
    if (!def) {
      setState({ q: defaultDefinition() }, true);
      return;
    }
    $("share-url").value = location.href;
    const key = JSON.stringify(def);
    if (key !== shown.q) {
      renderBuilder(def);
      shown = { q: key, people: null, person: null };
      if (!(await runFunnel(def, my)) || my !== generation) {
        shown.q = null;
        return;
      }
    }
    const peopleKey = [s.step, s.status, s.period, s.value, s.offset].join("|");
    if (peopleKey !== shown.people) {
      shown.people = peopleKey;
      await runPeople(def, s, my, focus);
      if (my !== generation) return;
    }
    if ((s.person || "") !== shown.person) {
      shown.person = s.person || "";
      await runJourney(s.person, my, focus);
    }
  }

  async function start() {
    const [names, found, sources] = await Promise.all([
      getJson("/api/v1/event-names?source=" + encodeURIComponent(source())).catch(() => []),
      getJson("/api/v1/funnel-templates?source=" + encodeURIComponent(source())).catch(() => []),
      getJson("/api/v1/sources").catch(() => []),
    ]);
    templates = found;
    const here = sources.find((x) => x.name === source());
    if (here) timezone = here.timezone;
    $("event-names").replaceChildren(...names.map((n) => el("option", { value: n.name, label: t("%(n)s events", { n: fmt.number(n.count) }) })));
    $("template").replaceChildren(...templates.map((x) => el("option", { value: x.name, textContent: t(x.title) })));
    wireBuilder();
    wireSaved();
    $("people-prev").addEventListener("click", () => setState({ offset: Math.max(0, (Number(state().offset) || 0) - PAGE) || null }));
    $("people-next").addEventListener("click", () => setState({ offset: (Number(state().offset) || 0) + PAGE }));
    document.addEventListener("masar:state", () => load(true));
    loadSaved().catch((error) => ($("saved-status").textContent = error.message));
    await load(false);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
