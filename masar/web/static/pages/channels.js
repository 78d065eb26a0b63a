/* Channels: what acquisition costs and returns per channel, campaign and platform (spend, CAC,
 * cost per lead, ROAS, LTV:CAC), email campaigns (delivery, opens, clicks, unsubscribes, bounces,
 * time to click, orders after a click, the best hour and weekday), and the spend and exchange
 * rate imports. Every figure comes from POST /api/v1/query; the range lives in the URL. */
(function () {
  "use strict";
  const { t, query, fmt, chart, table, busy, state, setState, exportButtons, config } = window.masar;
  const KPIS = ["ad_spend", "cac", "cost_per_lead", "roas", "new_customers", "leads"];
  const LOWER_IS_BETTER = new Set(["cac", "cost_per_lead"]);
  const BY_CHANNEL = ["ad_spend", "sessions", "leads", "new_customers", "cac", "cost_per_lead", "net_revenue", "roas"];
  const TRAFFIC = { paid: t("Paid"), organic: t("Organic") };
  const CATEGORIES = { search: t("Search"), social: t("Social"), shopping: t("Shopping"), video: t("Video") };
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }
  const ltr = (v) => el("span", v === null || v === undefined || v === "" ? "–" : v, "ltr");

  function range() {
    const s = state();
    const q = {};
    if (s.from) q.from = s.from;
    if (s.to) q.to = s.to;
    return q;
  }

  function attribution() {
    const n = parseInt(state().attribution || "5", 10);
    return Number.isFinite(n) && n >= 1 && n <= 90 ? n : 5;
  }

  const hourName = (h) => new Intl.DateTimeFormat(config.intl, { hour: "numeric", timeZone: "UTC" }).format(new Date(Date.UTC(2024, 0, 1, h)));
  // ISO weekday 1 = Monday; 1 January 2024 was a Monday.
  const weekdayName = (d) => new Intl.DateTimeFormat(config.intl, { weekday: "long", timeZone: "UTC" }).format(new Date(Date.UTC(2024, 0, d)));

  /* Export buttons for one list of a result beside its main table (POST /api/v1/export-rows). */
  function exportRows(box, queryFn, part) {
    const wrap = el("div", null, "exports");
    [["csv", t("CSV")], ["xlsx", t("Excel")]].forEach(([format, label]) => {
      const button = el("button", t("Export %(format)s", { format: label }), "link");
      button.type = "button";
      button.dataset.export = format;
      button.addEventListener("click", async () => {
        const body = Object.assign({ source: state().source || config.source }, queryFn());
        const response = await fetch("/api/v1/export-rows?" + new URLSearchParams({ part, format }), {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body),
        });
        if (!response.ok) {
          window.alert((await response.json().catch(() => ({ error: { message: response.statusText } }))).error.message);
          return;
        }
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = "masar-" + body.kind + "-" + part + "." + format;
        document.body.appendChild(link);
        link.click();
        setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 0);
      });
      wrap.appendChild(button);
    });
    box.appendChild(wrap);
  }

  // -- headline and per channel -----------------------------------------------------------------
  async function loadKpis() {
    const box = document.getElementById("kpis");
    const result = await busy(box, query(Object.assign({ kind: "metrics", metrics: KPIS, granularity: null, compare: true }, range())));
    document.getElementById("range-note").textContent = t("%(from)s to %(to)s, compared with %(pfrom)s to %(pto)s", {
      from: fmt.date(result.range.from), to: fmt.date(result.range.to),
      pfrom: fmt.date(result.previous_range.from), pto: fmt.date(result.previous_range.to),
    });
    document.getElementById("from").value = result.range.from;
    document.getElementById("to").value = result.range.to;
    box.replaceChildren(...result.metrics.map((m) => {
      const card = el("article", null, "kpi");
      card.dataset.metric = m.name;
      const change = el("div", null, "change");
      if (m.change !== null && m.change !== undefined) {
        const good = (m.change > 0) !== LOWER_IS_BETTER.has(m.name);
        change.classList.add(m.change === 0 ? "flat" : good ? "up" : "down");
        change.textContent = t("%(change)s vs previous period", { change: fmt.change(m.change) });
      } else {
        change.textContent = t("no previous value");
      }
      card.append(el("div", t(m.label), "label"), el("div", fmt.value(m.value, m.unit), "value"), change);
      return card;
    }));
  }

  async function loadChannels() {
    const box = document.getElementById("channels");
    const q = Object.assign({ kind: "metrics", compare: false, granularity: null, metrics: BY_CHANNEL, breakdown: "channel", breakdown_limit: 100 }, range());
    const result = await busy(box, query(q));
    const rows = result.breakdown.map((b) => Object.assign({ channel: b.value }, b.values));
    const label = (v) => (v === null ? t("Unassigned") : v === "$other" ? t("Other") : t(v));
    table(box, [
      { key: "channel", label: t("Channel"), format: label },
      { key: "ad_spend", label: t("Ad spend"), unit: "money" },
      { key: "sessions", label: t("Sessions"), unit: "count" },
      { key: "leads", label: t("Leads"), unit: "count" },
      { key: "new_customers", label: t("New customers"), unit: "count" },
      { key: "cac", label: t("Customer acquisition cost"), unit: "money" },
      { key: "cost_per_lead", label: t("Cost per lead"), unit: "money" },
      { key: "net_revenue", label: t("Net revenue"), unit: "money" },
      { key: "roas", label: t("Return on ad spend"), unit: "ratio" },
    ], rows);
    box.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.channel = rows[i].channel === null ? "" : rows[i].channel; });
    exportButtons(box, () => q);
    chart(document.getElementById("channel-chart"), {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => fmt.money(v) },
      legend: { top: 0, itemGap: 28, data: [t("Ad spend"), t("Net revenue")] },
      grid: { left: 40, right: 40, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", splitNumber: 4, axisLabel: { formatter: (v) => fmt.compactMoney(v), hideOverlap: true } },
      yAxis: { type: "category", inverse: true, data: rows.map((r) => label(r.channel)) },
      series: [
        { name: t("Ad spend"), type: "bar", data: rows.map((r) => Number(r.ad_spend) || 0) },
        { name: t("Net revenue"), type: "bar", data: rows.map((r) => Number(r.net_revenue) || 0) },
      ],
      ariaLabel: t("Ad spend and net revenue by channel"),
    });
  }

  async function loadCampaigns() {
    const box = document.getElementById("campaigns");
    const q = Object.assign({ kind: "acquisition" }, range());
    const result = await busy(box, query(q));
    table(box, [
      { key: "campaign", label: t("Campaign"), format: ltr },
      { key: "channel", label: t("Spend channel"), format: ltr },
      { key: "spend", label: t("Ad spend"), unit: "money" },
      { key: "sessions", label: t("Sessions"), unit: "count" },
      { key: "orders", label: t("Orders"), unit: "count" },
      { key: "revenue", label: t("Revenue"), unit: "money" },
      { key: "new_customers", label: t("New customers"), unit: "count" },
      { key: "leads", label: t("Leads"), unit: "count" },
      { key: "cac", label: t("CAC"), unit: "money" },
      { key: "cost_per_lead", label: t("Cost per lead"), unit: "money" },
      { key: "roas", label: t("ROAS"), unit: "ratio" },
      { key: "ltv_to_cac", label: t("LTV:CAC"), unit: "ratio" },
    ], result.rows, { caption: result.rows.length ? "" : t("No spend or campaign visits in this range.") });
    box.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.campaign = result.rows[i].campaign || ""; });
    exportButtons(box, () => q);
  }

  async function loadPlatforms() {
    const box = document.getElementById("platforms");
    const q = Object.assign({ kind: "platforms" }, range());
    const result = await busy(box, query(q));
    const name = (row) => (row.platform === null ? t("Other sources") : row.platform);
    table(box, [
      { key: "platform", label: t("Platform"), format: (v, row) => ltr(name(row)) },
      { key: "category", label: t("Kind"), format: (v) => (v ? CATEGORIES[v] || v : "–") },
      { key: "traffic", label: t("Traffic"), format: (v) => TRAFFIC[v] || v },
      { key: "sessions", label: t("Sessions"), unit: "count" },
      { key: "visitors", label: t("Visitors"), unit: "count" },
      { key: "conversion_rate", label: t("Session conversion rate"), unit: "rate" },
      { key: "orders", label: t("Orders"), unit: "count" },
      { key: "revenue", label: t("Revenue"), unit: "money" },
      { key: "ad_spend", label: t("Ad spend"), unit: "money" },
      { key: "roas", label: t("ROAS"), unit: "ratio" },
    ], result.rows);
    box.querySelectorAll("tbody tr").forEach((tr, i) => {
      tr.dataset.platform = result.rows[i].platform || "";
      tr.dataset.traffic = result.rows[i].traffic;
    });
    exportButtons(box, () => q);
    const shown = result.rows.filter((r) => r.platform !== null);
    chart(document.getElementById("platform-chart"), {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => fmt.money(v) },
      legend: { top: 0, itemGap: 28, data: [t("Ad spend"), t("Revenue")] },
      grid: { left: 40, right: 40, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", splitNumber: 4, axisLabel: { formatter: (v) => fmt.compactMoney(v), hideOverlap: true } },
      yAxis: { type: "category", inverse: true, data: shown.map((r) => name(r) + " · " + (TRAFFIC[r.traffic] || r.traffic)) },
      series: [
        // The same colours as the channel chart: spend first.
        { name: t("Ad spend"), type: "bar", data: shown.map((r) => Number(r.ad_spend) || 0) },
        { name: t("Revenue"), type: "bar", data: shown.map((r) => Number(r.revenue) || 0) },
      ],
      ariaLabel: t("Revenue and ad spend by platform"),
    });
  }

  // -- email ------------------------------------------------------------------------------------
  async function loadEmail() {
    const box = document.getElementById("email");
    const days = attribution();
    const q = Object.assign({ kind: "email", attribution_days: days }, range());
    const result = await busy(box, query(q));
    table(box, [
      { key: "campaign", label: t("Campaign"), format: ltr },
      { key: "delivered", label: t("Delivered"), unit: "count" },
      { key: "open_rate", label: t("Open rate"), unit: "rate" },
      { key: "click_rate", label: t("Click rate"), unit: "rate" },
      { key: "click_to_open_rate", label: t("Clicks per open"), unit: "rate" },
      { key: "unsubscribe_rate", label: t("Unsubscribe rate"), unit: "rate" },
      { key: "bounce_rate", label: t("Bounce rate"), unit: "rate" },
      { key: "median_hours_to_click", label: t("Hours to click (median)"), unit: "count", format: (v) => fmt.number(v, 1) },
      { key: "orders", label: t("Orders after a click"), unit: "count" },
      { key: "revenue", label: t("Revenue after a click"), unit: "money" },
    ], result.rows, {
      caption: result.rows.length
        ? t("Orders and revenue of clickers within %(n)s days of their click", { n: fmt.number(days) })
        : t("No email delivered in this range."),
    });
    box.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.campaign = result.rows[i].campaign; });
    exportButtons(box, () => q);
    timing("hour", result.by_hour, result.best_hour, hourName, t("The best hour: %(slot)s"), q, "by_hour");
    timing("weekday", result.by_weekday, result.best_weekday, weekdayName, t("The best weekday: %(slot)s"), q, "by_weekday");
  }

  function timing(name, rows, best, label, bestText, q, part) {
    document.getElementById("best-" + name).textContent = best === null || best === undefined ? t("No clicks yet.") : t(bestText, { slot: label(best) });
    chart(document.getElementById(name + "-chart"), {
      tooltip: {
        trigger: "axis", axisPointer: { type: "shadow" },
        formatter: (ps) => {
          const r = rows[ps[0].dataIndex];
          return t("%(slot)s: %(rate)s of %(n)s delivered clicked", { slot: label(r.slot), rate: fmt.percent(r.click_rate), n: fmt.number(r.delivered) });
        },
      },
      grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: rows.map((r) => label(r.slot)) },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt.percent(v, 0) } },
      series: [{ type: "bar", name: t("Click rate"), data: rows.map((r) => ({ value: r.click_rate || 0, itemStyle: r.slot === best ? { color: "#0f7a4a" } : undefined })) }],
      ariaLabel: name === "hour" ? t("Click-through by hour of delivery") : t("Click-through by weekday of delivery"),
    });
    const exp = document.getElementById(name + "-export");
    exp.replaceChildren();
    exportRows(exp, () => q, part);
  }

  // -- imports ----------------------------------------------------------------------------------
  function wireImport(formId, resultId, what) {
    const form = document.getElementById(formId);
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = document.getElementById(resultId);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      out.replaceChildren(el("p", t("Importing…"), "progress"));
      try {
        const response = await fetch(form.action, {
          method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() }, body: new FormData(form),
        });
        const data = await response.json().catch(() => null);
        if (!response.ok) throw new Error(data && data.error ? data.error.message : response.statusText);
        const summary = el("p", what === "spend"
          ? t("Imported %(n)s spend rows.", { n: fmt.number(data.written) })
          : t("Imported %(n)s exchange rates.", { n: fmt.number(data.written) }), "ok");
        out.replaceChildren(summary);
        if (data.rejected) {
          const note = el("p", t("%(n)s lines were refused; the other lines were imported:", { n: fmt.number(data.rejected) }), "error");
          note.setAttribute("role", "alert");
          const box = el("div", null, "import-errors");
          table(box, [
            { key: "line", label: t("Line"), unit: "count" },
            { key: "reason", label: t("Reason"), format: ltr },
          ], data.errors);
          out.append(note, box);
        }
        form.reset();
        load();
      } catch (error) {
        const box = el("p", error.message, "error");
        box.setAttribute("role", "alert");
        out.replaceChildren(box);
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- the page ---------------------------------------------------------------------------------
  async function load() {
    document.getElementById("attribution").value = attribution();
    // Every query is asked at once: they share the range's defaults (the 30 days ending on the
    // data's last day), so their windows are the same without waiting for the first answer.
    await Promise.allSettled([loadKpis(), loadChannels(), loadCampaigns(), loadPlatforms(), loadEmail()]);
    await window.masar.drawn();
    document.body.dataset.loaded = "channels";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("range").addEventListener("submit", (event) => {
      event.preventDefault();
      setState({
        from: document.getElementById("from").value, to: document.getElementById("to").value,
        attribution: document.getElementById("attribution").value,
      });
    });
    wireImport("spend-form", "spend-result", "spend");
    wireImport("rates-form", "rates-result", "rates");
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
