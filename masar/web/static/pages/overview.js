/* Overview: headline KPIs with their change and sparkline, revenue and orders over time against
 * the previous period, target pace, the top leaks, the best and worst channels. */
(function () {
  "use strict";
  const { t, query, fmt, chart, table, busy, state, setState, exportButtons } = window.masar;
  // Metrics where a fall is good news.
  const LOWER_IS_BETTER = new Set([
    "cart_abandonment_rate", "checkout_abandonment_rate", "churn_rate", "cac", "cost_per_lead", "refunds",
    "sales_cycle_median", "sales_cycle_p90", "abandoned_cart_value", "time_between_orders",
  ]);

  function metricsQuery() {
    const s = state();
    const q = { kind: "metrics", granularity: s.granularity || "day", compare: true };
    if (s.from) q.from = s.from;
    if (s.to) q.to = s.to;
    return q;
  }

  /* A sparkline is a plain SVG polyline (ten charts' worth of ECharts would cost more than the data);
   * it runs right to left on Arabic pages, like the charts. */
  function sparkline(el, values, label) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    svg.style.width = "100%";
    svg.style.height = "100%";
    if (values.length > 1) {
      const low = Math.min(...values);
      const span = Math.max(...values) - low || 1;
      const step = 100 / (values.length - 1);
      const points = values.map((v, i) => {
        const x = window.masar.rtl ? 100 - i * step : i * step;
        return x.toFixed(2) + "," + (28 - ((v - low) / span) * 26).toFixed(2);
      });
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", "#1f6feb");
      line.setAttribute("stroke-width", "1.5");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(line);
    }
    el.replaceChildren(svg);
  }

  function card(metric, series) {
    const box = document.createElement("article");
    box.className = "kpi";
    box.dataset.metric = metric.name;
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = t(metric.label);
    const value = document.createElement("div");
    value.className = "value";
    value.textContent = fmt.value(metric.value, metric.unit);
    const change = document.createElement("div");
    change.className = "change";
    if (metric.change !== null && metric.change !== undefined) {
      const good = (metric.change > 0) !== LOWER_IS_BETTER.has(metric.name);
      change.classList.add(metric.change === 0 ? "flat" : good ? "up" : "down");
      change.textContent = t("%(change)s vs previous period", { change: fmt.change(metric.change) });
    } else {
      change.textContent = t("no previous value");
    }
    const spark = document.createElement("div");
    spark.className = "spark";
    box.append(label, value, change, spark);
    sparkline(spark, series.map((r) => Number(r.values[metric.name]) || 0), t("Trend of %(metric)s", { metric: t(metric.label) }));
    return box;
  }

  function overTime(el, current, previous, name, unit) {
    const periods = current.series.map((r) => r.period);
    const shift = previous ? previous.series.map((r) => Number(r.values[name]) || 0) : [];
    chart(el, {
      tooltip: { trigger: "axis", valueFormatter: (v) => fmt.value(v, unit) },
      legend: { top: 0, data: [t("This period"), t("Previous period")] },
      grid: { left: 16, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: periods, axisLabel: { formatter: (v) => fmt.date(v) } },
      yAxis: { type: "value", axisLabel: { formatter: (v) => (unit === "money" ? fmt.compactMoney(v) : fmt.number(v)) } },
      series: [
        { name: t("This period"), type: "line", data: current.series.map((r) => Number(r.values[name]) || 0), areaStyle: { opacity: 0.08 } },
        { name: t("Previous period"), type: "line", data: shift, lineStyle: { type: "dashed" } },
      ],
      ariaLabel: t("%(metric)s over time", { metric: t(name === "net_revenue" ? "Net revenue" : "Orders") }),
    });
  }

  async function loadKpis() {
    const q = metricsQuery();
    const kpis = document.getElementById("kpis");
    const result = await busy(kpis, query(q));
    const note = document.getElementById("range-note");
    note.textContent = t("%(from)s to %(to)s, compared with %(pfrom)s to %(pto)s", {
      from: fmt.date(result.range.from), to: fmt.date(result.range.to),
      pfrom: fmt.date(result.previous_range.from), pto: fmt.date(result.previous_range.to),
    });
    document.getElementById("from").value = result.range.from;
    document.getElementById("to").value = result.range.to;
    // Everything else asks at once, before anything is drawn.
    const previousAsked = query(Object.assign({}, q, { from: result.previous_range.from, to: result.previous_range.to, compare: false, metrics: ["net_revenue", "orders"] }));
    const others = Promise.allSettled([loadTarget(result.range), loadLeaks(result.range), loadChannels(result.range)]);
    kpis.replaceChildren(...result.metrics.map((m) => card(m, result.series)));
    if (result.unconverted && result.unconverted.length) {
      const warn = document.createElement("p");
      warn.className = "error";
      warn.textContent = t("Some amounts have no exchange rate and are left out: %(list)s", {
        list: result.unconverted.map((u) => u.currency).join(", "),
      });
      kpis.after(warn);
    }
    const previous = await previousAsked;
    overTime(document.getElementById("revenue-chart"), result, previous, "net_revenue", "money");
    overTime(document.getElementById("orders-chart"), result, previous, "orders", "count");
    const exp = document.getElementById("revenue-export");
    if (!exp.children.length) exportButtons(exp, () => metricsQuery());
    await others;
  }

  async function loadTarget(range) {
    const el = document.getElementById("target");
    let result;
    try {
      result = await query({ kind: "targets" });
    } catch (error) {
      el.textContent = error.code === "invalid_query" ? t("Targets are not available yet.") : error.message;
      return;
    }
    const months = (result.months || []).filter((m) => m.month === range.to.slice(0, 7));
    if (!months.length) {
      el.textContent = t("No target for this month. Set one in Settings.");
      return;
    }
    const m = months[0];
    const rows = [];
    const row = (what, part, unit) => part && rows.push({
      what, unit, target: part.target, actual: part.actual, attainment: part.attainment,
      projected: part.projected, projected_attainment: part.projected_attainment, on_track: part.on_track,
    });
    row(t("Net revenue"), m.revenue, "money");
    row(t("Orders"), m.orders, "count");
    const shown = (v, r) => fmt.value(v, r.unit);
    // The projection, its interval below it (numbers and a dash only, nothing to translate).
    const projected = (p, r) => {
      if (!p) return "–";
      const box = document.createElement("span");
      const range = document.createElement("small");
      range.className = "muted";
      range.textContent = `${shown(p.lower, r)} – ${shown(p.upper, r)}`;
      box.append(shown(p.value, r), document.createElement("br"), range);
      return box;
    };
    table(el, [
      { key: "what", label: t("Measure") },
      { key: "target", label: t("Goal"), unit: "money", format: shown },
      { key: "actual", label: t("To date"), unit: "money", format: shown },
      { key: "attainment", label: t("Attainment"), unit: "rate" },
      { key: "projected", label: t("Projected"), unit: "money", format: projected },
      { key: "on_track", label: t("On track"), format: (v) => (v === null || v === undefined ? "–" : v ? t("Yes") : t("No")) },
    ], rows, { caption: t("%(month)s: %(elapsed)s of %(days)s days", {
      month: fmt.month(m.month), elapsed: fmt.number(m.elapsed_days), days: fmt.number(m.days) }) });
  }

  async function loadLeaks(range) {
    const el = document.getElementById("leaks");
    const result = await busy(el, query({ kind: "leaks", template: "store", from: range.from, to: range.to, limit: 5 }));
    const findings = result.findings || [];
    if (!findings.length) {
      el.textContent = t("No significant leaks in this range.");
      return;
    }
    const list = document.createElement("ol");
    findings.slice(0, 5).forEach((f) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/leaks?" + new URLSearchParams({ source: state().source || window.masar.config.source || "", from: range.from, to: range.to });
      // The engine's summary is English: the sentence is composed in the page's language.
      link.textContent = window.masar.leaks.sentence(f, { counting: result.counting, lastStep: window.masar.leaks.lastStep(result) });
      li.appendChild(link);
      list.appendChild(li);
    });
    el.replaceChildren(list);
  }

  async function loadChannels(range) {
    const el = document.getElementById("channels");
    const result = await busy(el, query({
      kind: "metrics", from: range.from, to: range.to, compare: false, granularity: null,
      metrics: ["net_revenue", "sessions", "session_conversion_rate", "roas"], breakdown: "channel", breakdown_limit: 20,
    }));
    const rows = result.breakdown
      .filter((b) => b.value !== null && b.value !== "$other")
      .map((b) => Object.assign({ channel: b.value }, b.values));
    rows.sort((a, b) => Number(b.net_revenue) - Number(a.net_revenue));
    const shown = rows.length > 6 ? rows.slice(0, 3).concat(rows.slice(-3)) : rows;
    table(el, [
      { key: "channel", label: t("Channel"), format: (v) => t(v) },
      { key: "net_revenue", label: t("Net revenue"), unit: "money" },
      { key: "sessions", label: t("Sessions"), unit: "count" },
      { key: "session_conversion_rate", label: t("Session conversion rate"), unit: "rate" },
      { key: "roas", label: t("Return on ad spend"), unit: "ratio" },
    ], shown, { caption: rows.length > 6 ? t("The three best and the three worst, by net revenue") : "" });
    exportButtons(el, () => ({ kind: "metrics", from: range.from, to: range.to, compare: false, granularity: null,
      metrics: ["net_revenue", "sessions", "session_conversion_rate", "roas"], breakdown: "channel", breakdown_limit: 100 }));
  }

  async function load() {
    const s = state();
    if (s.granularity) document.getElementById("granularity").value = s.granularity;
    await loadKpis();
    await window.masar.drawn();
    document.body.dataset.loaded = "overview";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("range").addEventListener("submit", (e) => {
      e.preventDefault();
      setState({
        from: document.getElementById("from").value, to: document.getElementById("to").value,
        granularity: document.getElementById("granularity").value,
      });
    });
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
