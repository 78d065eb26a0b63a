/* Cohorts: people grouped by when they started (first order, first visit, signup), and for each
 * later period the share who came back or bought, or the revenue per member so far — a heatmap
 * (cohorts × period N, periods not complete yet marked, never shown as drops), the retention
 * curve, and the table. State in the URL: by, period, measure, mode, periods, channel, group,
 * from, to (the engine's defaults when absent).
 */
(function () {
  "use strict";
  const { t, query, fmt, chart, drawn, table, busy, state, setState, exportButtons, rtl } = window.masar;
  const DEFAULTS = {
    by: "first_order", period: "month", measure: "purchasing", mode: "first_time", periods: "12", channel: "",
    group: "period", from: "", to: "",
  };
  const SCALE = ["#f5f8ff", "#6f95f0"]; // dark text stays readable on both ends (WCAG AA)

  function cohortsQuery(s) {
    const q = { kind: "cohorts" };
    ["by", "period", "measure", "mode", "group", "channel", "from", "to"].forEach((k) => {
      if (s[k]) q[k] = s[k];
    });
    if (s.periods) q.periods = Number(s.periods);
    return q;
  }

  const isMoney = (result) => result.measure === "revenue";
  const short = (result, v) => (isMoney(result) ? fmt.compactMoney(v) : fmt.percent(v, 0));
  const full = (result, v) => (isMoney(result) ? fmt.money(v) : fmt.percent(v));

  function rowLabel(result, row) {
    if (result.group === "channel") return row.cohort === null ? t("No first channel") : t(row.cohort);
    return result.period === "month" ? fmt.month(row.cohort) : t("Week of %(date)s", { date: fmt.date(row.cohort) });
  }

  function axisName(result) {
    return result.period === "week" ? t("Weeks after the cohort's start") : t("Months after the cohort's start");
  }

  /* Period rows before the first cohort with members are left out (a young store's table would
   * otherwise start with empty years). */
  function shownRows(result) {
    if (result.group !== "period") return result.rows;
    const first = result.rows.findIndex((r) => r.size > 0);
    return first < 0 ? [] : result.rows.slice(first);
  }

  function membersText(result, count, base) {
    return isMoney(result)
      ? t("%(count)s of %(base)s members have bought so far", { count: fmt.number(count), base: fmt.number(base) })
      : t("%(count)s of %(base)s members", { count: fmt.number(count), base: fmt.number(base) });
  }

  function heatmap(el, result, rows) {
    const periods = Array.from({ length: result.periods }, (_, n) => n);
    const values = [];
    const pending = [];
    rows.forEach((row, y) =>
      row.values.forEach((v, n) => {
        if (v !== null) values.push({ value: [n, y, v], partial: !row.complete[n], count: row.counts[n], base: row.bases[n] });
        else if (!row.complete[n]) pending.push({ value: [n, y, 0] });
      }),
    );
    // Period 0 is the cohort's own period (everyone bought in it, by first order): the colour
    // scale is set by the later periods, where the differences are.
    const later = values.filter((d) => d.value[0] > 0).map((d) => d.value[2]);
    const max = Math.max(...(later.length ? later : values.map((d) => d.value[2])), isMoney(result) ? 1 : 0.01);
    chart(el, {
      tooltip: {
        formatter: (p) => {
          const row = rows[p.value[1]];
          const head = [rowLabel(result, row), t("Period %(n)s", { n: fmt.number(p.value[0]) })];
          if (p.seriesIndex === 1) return esc(head.concat(t("Not complete yet")));
          const lines = head.concat(full(result, p.value[2]), membersText(result, p.data.count, p.data.base));
          if (p.data.partial) lines.push(t("Only the cohorts of this row that have finished this period"));
          return esc(lines);
        },
      },
      grid: { left: 24, right: 24, top: 8, bottom: 70, containLabel: true },
      xAxis: {
        type: "category", data: periods.map((n) => fmt.number(n)), name: axisName(result), nameLocation: "middle",
        nameGap: 26, splitArea: { show: true },
      },
      yAxis: { type: "category", data: rows.map((r) => rowLabel(result, r)), inverse: true, splitArea: { show: true } },
      visualMap: {
        min: 0, max, calculable: false, orient: "horizontal", left: "center", bottom: 0, seriesIndex: 0,
        itemHeight: 120, text: [short(result, max), short(result, 0)], inRange: { color: SCALE }, inverse: rtl,
      },
      series: [
        {
          type: "heatmap", name: t("Retention by cohort"), data: values,
          label: { show: true, color: "#1f2933", formatter: (p) => short(result, p.value[2]) + (p.data.partial ? "*" : "") },
        },
        {
          type: "heatmap", name: t("Not complete yet"), data: pending, itemStyle: { color: "#eef0f3" },
          label: { show: true, color: "#52606d", formatter: () => "…" },
        },
      ],
      ariaLabel: t("Heatmap of the cohorts by period; the cohort table below gives the same numbers"),
    });
  }

  function esc(lines) {
    const div = document.createElement("div");
    return lines.map((line) => {
      div.textContent = line;
      return div.innerHTML;
    }).join("<br>");
  }

  function curve(el, result) {
    const money = isMoney(result);
    chart(el, {
      tooltip: {
        trigger: "axis",
        formatter: (items) => {
          const point = result.curve[items[0].dataIndex];
          const lines = [t("Period %(n)s", { n: fmt.number(point.period) })];
          if (point.value === null) return esc(lines.concat(t("Not complete yet")));
          return esc(lines.concat(full(result, point.value),
            t("%(cohorts)s cohorts, %(members)s members", { cohorts: fmt.number(point.cohorts), members: fmt.number(point.members) })));
        },
      },
      grid: { left: 16, right: 16, top: 16, bottom: 36, containLabel: true },
      xAxis: { type: "category", data: result.curve.map((p) => fmt.number(p.period)), name: axisName(result), nameLocation: "middle", nameGap: 26 },
      yAxis: { type: "value", min: 0, axisLabel: { formatter: (v) => (money ? fmt.compactMoney(v) : fmt.percent(v, 0)) } },
      series: [{ type: "line", name: t("Retention curve"), data: result.curve.map((p) => p.value), connectNulls: false, areaStyle: { opacity: 0.08 } }],
      ariaLabel: t("Retention curve: the cohorts' average by period"),
    });
  }

  function cohortTable(el, result, rows) {
    const columns = [
      { key: "label", label: result.group === "channel" ? t("First channel") : t("Cohort") },
      { key: "size", label: t("Members"), unit: "count" },
    ];
    for (let n = 0; n < result.periods; n++) {
      columns.push({
        key: "p" + n, label: fmt.number(n), unit: isMoney(result) ? "money" : "rate",
        format: (v, row) => {
          const span = document.createElement("span");
          if (v === null) {
            span.textContent = row.complete[n] ? "–" : "…";
            if (!row.complete[n]) span.title = t("Not complete yet");
            return span;
          }
          span.textContent = full(result, v) + (row.complete[n] ? "" : "*");
          return span;
        },
      });
    }
    const data = rows.map((r) => {
      const out = { label: rowLabel(result, r), size: r.size, complete: r.complete };
      r.values.forEach((v, n) => {
        out["p" + n] = v;
      });
      return out;
    });
    table(el, columns, data, { caption: isMoney(result) ? t("Revenue per member to date, by period after the start") : t("Share of members, by period after the start") });
  }

  function fillControls(s) {
    Object.entries(DEFAULTS).forEach(([key, value]) => {
      document.getElementById(key).value = s[key] || value;
    });
  }

  async function load() {
    const s = state();
    fillControls(s);
    const q = cohortsQuery(s);
    const heat = document.getElementById("heatmap");
    const status = document.getElementById("heatmap-status");
    let result;
    try {
      status.replaceChildren();
      result = await busy(status, query(q));
    } catch (error) {
      heat.hidden = true;
      document.body.dataset.loaded = "cohorts";
      return;
    }
    const rows = shownRows(result);
    const span = {
      n: fmt.number(rows.length), start: fmt.date(rows.length && result.group === "period" ? rows[0].cohort : result.start),
      end: fmt.date(result.end), as_of: fmt.date(result.as_of),
    };
    document.getElementById("cohorts-note").textContent = result.group === "channel"
      ? t("%(n)s first channels, over the cohorts from %(start)s to %(end)s; data as of %(as_of)s.", span)
      : t("%(n)s cohorts from %(start)s to %(end)s; data as of %(as_of)s.", span);
    heat.hidden = !rows.length;
    if (!rows.length) status.textContent = t("No one started in this range.");
    else heatmap(heat, result, rows);
    document.getElementById("heatmap-note").textContent = result.group === "channel"
      ? t("… : period not complete yet (not a drop). * : only the cohorts of the row that have finished the period.")
      : t("… : period not complete yet (not a drop).");
    curve(document.getElementById("curve"), result);
    cohortTable(document.getElementById("cohort-table"), result, rows);
    ["heatmap-export", "curve-export"].forEach((id) => {
      const el = document.getElementById(id);
      el.replaceChildren();
      exportButtons(el, () => q);
    });
    exportButtons(document.getElementById("cohort-table"), () => q);
    await drawn();
    document.body.dataset.loaded = "cohorts";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("cohorts-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const changes = {};
      Object.entries(DEFAULTS).forEach(([key, value]) => {
        const picked = document.getElementById(key).value;
        changes[key] = picked === value ? null : picked;
      });
      setState(changes);
    });
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
