/* Customers: RFM segments (sizes, revenue share, the R×F grid, a segment's customers), saved
 * audiences (counts, the built-in examples, saving one, members), lifetime value (predicted and
 * historical, by cohort, channel or segment; the top customers) and one customer's profile with
 * the timeline. Every figure comes from POST /api/v1/query; the state (tab, segment, audience,
 * person, page) lives in the URL. */
(function () {
  "use strict";
  const { t, query, fmt, chart, table, busy, state, setState, exportButtons, getJson, config } = window.masar;
  const TABS = ["rfm", "audiences", "ltv", "profile"];
  const PAGE = 50;
  // The ten RFM segments in the engine's order (best first), with their labels.
  const SEGMENTS = {
    "Champions": t("Champions"),
    "Loyal Customers": t("Loyal Customers"),
    "Potential Loyalists": t("Potential Loyalists"),
    "New Customers": t("New Customers"),
    "Promising": t("Promising"),
    "Need Attention": t("Need Attention"),
    "About to Sleep": t("About to Sleep"),
    "At Risk": t("At Risk"),
    "Can't Lose Them": t("Can't Lose Them"),
    "Hibernating": t("Hibernating"),
  };
  // The built-in audience examples: their titles with the parameters as placeholders.
  const EXAMPLE_TITLES = {
    cart_abandoners: t("Added to cart in the last %(days)s days and no order since"),
    viewed_not_added: t("Viewed a product %(times)s+ times without adding it"),
    bought_not_bought: t("Bought from %(bought)s but never from %(never)s"),
    top_customers: t("Top %(percent)s by revenue"),
    lapsed: t("Lapsed: no order in %(factor)s× their usual gap"),
  };
  const PARAM_LABELS = {
    days: t("Days"),
    times: t("Views of the same product"),
    bought: t("Categories bought (comma-separated)"),
    never: t("Categories never bought (comma-separated)"),
    percent: t("Percent of customers"),
    factor: t("Times their usual gap"),
  };
  const STATUSES = {
    completed: t("Completed"), refunded: t("Refunded"), partially_refunded: t("Partially refunded"), cancelled: t("Cancelled"),
  };
  let zone = "UTC";
  let examples = null;
  let savedVersion = 0; // bumped when an audience is saved or deleted: the list reloads

  const segmentLabel = (name) => (name in SEGMENTS ? SEGMENTS[name] : name || t("Unknown"));
  const money = (v) => fmt.money(v === null || v === undefined ? null : Number(v));
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const sourceName = () => state().source || config.source;

  function when(iso) {
    if (!iso) return "–";
    return new Intl.DateTimeFormat(config.intl, { dateStyle: "medium", timeStyle: "short", timeZone: zone }).format(new Date(iso));
  }

  function exampleTitle(example, values) {
    const shown = {};
    example.params.forEach((p) => {
      const v = values && values[p.name] !== undefined ? values[p.name] : p.default;
      if (v === null || v === undefined) shown[p.name] = "…";
      else if (Array.isArray(v)) shown[p.name] = v.join(config.dir === "rtl" ? "، " : ", ");
      else if (p.name === "percent") shown[p.name] = fmt.percent(Number(v) / 100);
      else shown[p.name] = fmt.number(v);
    });
    return t(EXAMPLE_TITLES[example.key] || example.title, shown);
  }

  async function send(method, url, body) {
    const headers = { "X-CSRF-Token": csrf() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, credentials: "same-origin", headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = data && data.error ? data.error : { message: response.statusText, code: "http_" + response.status };
      throw new window.masar.QueryError(error.message, error.code, response.status);
    }
    return data;
  }

  // -- small builders ---------------------------------------------------------------------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  /* A link to a customer's profile: a real link (opens in a new tab too), kept in the page. */
  function personLink(person, row) {
    const a = el("a", (row && (row.email || row.user_id)) || t("Person %(id)s", { id: person }), "ltr");
    const params = new URLSearchParams(location.search);
    params.set("tab", "profile");
    params.set("person", String(person));
    params.set("by", "person");
    a.href = location.pathname + "?" + params;
    a.dataset.person = String(person);
    a.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button) return;
      event.preventDefault();
      setState({ tab: "profile", person: String(person), by: "person" });
      document.getElementById("panel-profile").focus();
    });
    return a;
  }

  function actionButton(label, onClick, data) {
    const button = el("button", label, "link");
    button.type = "button";
    Object.assign(button.dataset, data || {});
    button.addEventListener("click", onClick);
    return button;
  }

  function pager(container, total, offset, key) {
    if (total <= PAGE && !offset) return;
    const nav = el("nav", null, "pager");
    nav.setAttribute("aria-label", t("Pages of the list"));
    const prev = actionButton(t("Previous"), () => setState({ [key]: offset - PAGE > 0 ? offset - PAGE : null }));
    prev.disabled = offset === 0;
    const next = actionButton(t("Next"), () => setState({ [key]: offset + PAGE }));
    next.disabled = offset + PAGE >= total;
    const info = el("span", t("%(first)s–%(last)s of %(total)s", {
      first: fmt.number(Math.min(total, offset + 1)), last: fmt.number(Math.min(total, offset + PAGE)), total: fmt.number(total),
    }), "muted");
    nav.append(prev, info, next);
    container.appendChild(nav);
  }

  function offsetOf(key) {
    const n = parseInt(state()[key] || "0", 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  }

  // -- tabs -------------------------------------------------------------------------------------
  function currentTab() {
    const s = state();
    if (TABS.includes(s.tab)) return s.tab;
    return s.person ? "profile" : "rfm";
  }

  function showTab(name) {
    TABS.forEach((tab) => {
      const button = document.getElementById("tab-" + tab);
      const selected = tab === name;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      document.getElementById("panel-" + tab).hidden = !selected;
    });
  }

  function wireTabs() {
    const buttons = TABS.map((tab) => document.getElementById("tab-" + tab));
    buttons.forEach((button, i) => {
      button.addEventListener("click", () => setState({ tab: button.dataset.tab }));
      button.addEventListener("keydown", (event) => {
        // Arrows follow the reading direction: in Arabic the next tab is on the left.
        const forward = config.dir === "rtl" ? "ArrowLeft" : "ArrowRight";
        const back = config.dir === "rtl" ? "ArrowRight" : "ArrowLeft";
        let to = null;
        if (event.key === forward) to = (i + 1) % buttons.length;
        else if (event.key === back) to = (i - 1 + buttons.length) % buttons.length;
        else if (event.key === "Home") to = 0;
        else if (event.key === "End") to = buttons.length - 1;
        if (to === null) return;
        event.preventDefault();
        buttons[to].focus();
        setState({ tab: buttons[to].dataset.tab });
      });
    });
  }

  // What each panel shows now: a panel reloads only when its part of the state changed.
  const shown = {};
  function changed(panel, key) {
    const text = JSON.stringify(key);
    if (shown[panel] === text) return false;
    shown[panel] = text;
    return true;
  }

  // -- RFM --------------------------------------------------------------------------------------
  async function loadRfm() {
    const s = state();
    // Both asked at once; the segment's rows are marked once the segments table is there.
    await Promise.all([
      changed("rfm", [s.source]) ? loadSegments() : null,
      changed("segment", [s.source, s.segment, s.seg_offset]) ? loadSegmentCustomers() : null,
    ]);
    markSegment();
  }

  async function loadSegments() {
    const chartEl = document.getElementById("segments-chart");
    const result = await busy(chartEl, query({ kind: "rfm" }));
    document.getElementById("rfm-note").textContent = t("%(customers)s customers as of %(date)s, with %(revenue)s of revenue net of refunds.", {
      customers: fmt.number(result.customers), date: fmt.date(result.as_of), revenue: money(result.revenue),
    });
    const names = result.segments.map((x) => x.segment);
    chart(chartEl, {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => fmt.percent(v) },
      legend: { top: 0, itemGap: 28, data: [t("Share of customers"), t("Share of revenue")] },
      grid: { left: 24, right: 24, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", axisLabel: { formatter: (v) => fmt.percent(v, 0) } },
      yAxis: { type: "category", inverse: true, data: names.map(segmentLabel) },
      series: [
        { name: t("Share of customers"), type: "bar", data: result.segments.map((x) => x.share || 0), cursor: "pointer" },
        { name: t("Share of revenue"), type: "bar", data: result.segments.map((x) => x.revenue_share || 0), cursor: "pointer" },
      ],
      ariaLabel: t("Share of customers and of revenue per RFM segment"),
    }).then((instance) => {
      instance.off("click");
      instance.on("click", (p) => selectSegment(names[p.dataIndex]));
    });
    const tableEl = document.getElementById("segments-table");
    table(tableEl, [
      { key: "segment", label: t("Segment"), format: (v) => actionButton(segmentLabel(v), () => selectSegment(v), { segment: v }) },
      { key: "customers", label: t("Customers"), unit: "count" },
      { key: "share", label: t("Share of customers"), unit: "rate" },
      { key: "revenue", label: t("Revenue"), unit: "money" },
      { key: "revenue_share", label: t("Share of revenue"), unit: "rate" },
      { key: "mean_recency_days", label: t("Days since last order (mean)"), unit: "count", format: (v) => fmt.number(v, 1) },
      { key: "mean_frequency", label: t("Orders (mean)"), unit: "count", format: (v) => fmt.number(v, 1) },
      { key: "mean_monetary", label: t("Revenue per customer"), unit: "money" },
    ], result.segments);
    tableEl.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.segment = names[i]; });
    exportButtons(tableEl, () => ({ kind: "rfm" }));
    drawGrid(result);
  }

  function drawGrid(result) {
    const data = [];
    let most = 0;
    result.grid.forEach((row) => row.forEach((n) => { most = Math.max(most, n); }));
    result.grid.forEach((row, r) => row.forEach((n, f) => {
      // Dark cells get light labels.
      data.push({ value: [f, r, n], label: { color: n > most / 2 ? "#ffffff" : "#1f2933" } });
    }));
    const scores = ["1", "2", "3", "4", "5"].map((v) => fmt.number(Number(v)));
    chart(document.getElementById("grid-chart"), {
      tooltip: {
        formatter: (p) => t("Recency %(r)s, frequency %(f)s: %(n)s customers", {
          r: scores[p.value[1]], f: scores[p.value[0]], n: fmt.number(p.value[2]),
        }),
      },
      grid: { left: 32, right: 32, top: 8, bottom: 40, containLabel: true },
      xAxis: { type: "category", data: scores, name: t("Frequency score"), nameLocation: "middle", nameGap: 26, splitArea: { show: true } },
      yAxis: { type: "category", data: scores, name: t("Recency score"), nameLocation: "middle", nameGap: 26, splitArea: { show: true } },
      visualMap: { min: 0, max: Math.max(1, most), show: false, inRange: { color: ["#eef2ff", "#1f4fd1"] } },
      series: [{
        type: "heatmap", data,
        label: { show: true, formatter: (p) => fmt.number(p.value[2]) },
      }],
      ariaLabel: t("Customers per recency and frequency score"),
    });
    const exp = document.getElementById("grid-export");
    if (!exp.children.length) {
      exp.appendChild(el("p", t("The export lists every customer with their scores."), "muted"));
      exportButtons(exp, () => ({ kind: "rfm_customers", limit: null }));
    }
  }

  function markSegment() {
    const chosen = state().segment;
    document.querySelectorAll("#segments-table tbody tr").forEach((tr) => {
      if (tr.dataset.segment === chosen) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    });
  }

  function selectSegment(name) {
    setState({ segment: name, seg_offset: null });
    document.getElementById("segment-customers-card").scrollIntoView({ block: "start" });
  }

  async function loadSegmentCustomers() {
    const s = state();
    const box = document.getElementById("segment-customers");
    const title = document.getElementById("segment-customers-title");
    if (!s.segment) {
      box.replaceChildren();
      return;
    }
    document.getElementById("segment-hint").hidden = true;
    title.textContent = t("Customers of %(segment)s", { segment: segmentLabel(s.segment) });
    const offset = offsetOf("seg_offset");
    const q = { kind: "rfm_customers", segment: s.segment, limit: PAGE, offset };
    const result = await busy(box, query(q));
    box.dataset.segment = s.segment;
    box.dataset.total = String(result.total);
    const caption = t("%(n)s customers, highest revenue first", { n: fmt.number(result.total) });
    table(box, [
      { key: "person", label: t("Customer"), format: (v, row) => personLink(v, row) },
      { key: "user_id", label: t("User id"), format: (v) => el("span", v || "–", "ltr") },
      { key: "recency_days", label: t("Days since last order"), unit: "count" },
      { key: "frequency", label: t("Orders"), unit: "count" },
      { key: "monetary", label: t("Revenue"), unit: "money" },
      { key: "r", label: t("R"), unit: "count" },
      { key: "f", label: t("F"), unit: "count" },
      { key: "m", label: t("M"), unit: "count" },
    ], result.customers, { caption });
    pager(box, result.total, offset, "seg_offset");
    exportButtons(box, () => ({ kind: "rfm_customers", segment: s.segment, limit: null }));
  }

  // -- audiences --------------------------------------------------------------------------------
  async function loadExamples() {
    if (!examples) examples = await getJson("/api/v1/audience-examples");
    return examples;
  }

  async function loadAudiences() {
    const s = state();
    if (changed("audiences", [s.source, savedVersion])) await Promise.all([listAudiences(), listExamples()]);
    if (changed("members", [s.source, s.audience, s.example, s.aud_offset, savedVersion])) await loadMembers();
  }

  async function listAudiences() {
    const box = document.getElementById("audiences");
    const saved = await busy(box, getJson("/api/v1/audiences?source=" + encodeURIComponent(sourceName())));
    if (!saved.length) {
      box.replaceChildren(el("p", t("No saved audience yet: save one from an example or a definition."), "muted"));
      return;
    }
    const canWrite = ["analyst", "owner"].includes(config.role);
    const rows = saved.map((a) => ({ name: a.name, count: null, updated_at: a.updated_at }));
    const draw = () => {
      table(box, [
        { key: "name", label: t("Audience"), format: (v) => el("span", v, "name") },
        { key: "count", label: t("Members"), unit: "count", format: (v) => (v === null ? t("counting…") : fmt.number(v)) },
        { key: "updated_at", label: t("Saved"), format: (v) => when(v) },
        { key: "name", label: t("Actions"), format: (v) => {
          const wrap = el("span");
          wrap.appendChild(actionButton(t("Members"), () => setState({ audience: v, example: null, aud_offset: null }), { members: v }));
          if (canWrite) wrap.appendChild(actionButton(t("Delete"), () => removeAudience(v), { delete: v }));
          return wrap;
        } },
      ], rows);
      box.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.audience = rows[i].name; });
    };
    draw();
    // Each count is the audience query itself (limit 0 only counts).
    await Promise.all(rows.map(async (row) => {
      try {
        row.count = (await query({ kind: "audience", name: row.name, limit: 0 })).count;
      } catch (error) {
        row.count = null;
      }
    }));
    draw();
  }

  async function removeAudience(name) {
    if (!window.confirm(t("Delete the audience %(name)s?", { name }))) return;
    try {
      await send("DELETE", "/api/v1/audiences?" + new URLSearchParams({ source: sourceName(), name }));
    } catch (error) {
      window.alert(error.message);
      return;
    }
    savedVersion += 1;
    setState({ audience: state().audience === name ? null : state().audience });
  }

  async function listExamples() {
    const box = document.getElementById("examples");
    const list = await busy(box, loadExamples());
    table(box, [
      { key: "key", label: t("Example"), format: (v, row) => exampleTitle(row) },
      { key: "key", label: t("Actions"), format: (v, row) => {
        const wrap = el("span");
        const needs = row.params.some((p) => p.default === null);
        if (needs) wrap.appendChild(el("span", t("needs categories: save it with yours"), "muted"));
        else wrap.appendChild(actionButton(t("Members"), () => setState({ example: v, audience: null, aud_offset: null }), { example: v }));
        const form = document.getElementById("audience-form");
        if (form) wrap.appendChild(actionButton(t("Use in the form"), () => useExample(v)));
        return wrap;
      } },
    ], list);
    fillExampleForm(list);
  }

  function fillExampleForm(list) {
    const select = document.getElementById("audience-example");
    if (!select || select.options.length) return;
    list.forEach((e) => {
      const option = el("option", exampleTitle(e));
      option.value = e.key;
      select.appendChild(option);
    });
    select.addEventListener("change", () => drawParams());
    drawParams();
  }

  function drawParams() {
    const key = document.getElementById("audience-example").value;
    const example = examples.find((e) => e.key === key);
    const box = document.getElementById("example-params");
    box.replaceChildren();
    example.params.forEach((p) => {
      const id = "param-" + p.name;
      const label = el("label", PARAM_LABELS[p.name] || p.name);
      label.htmlFor = id;
      const input = document.createElement("input");
      input.id = id;
      input.name = p.name;
      input.dataset.param = p.name;
      if (p.default === null) {
        input.required = true;
        input.dir = "auto";
      } else {
        input.type = "number";
        input.min = "0";
        input.step = "any";
        input.value = p.default;
      }
      box.append(label, input);
    });
    const definition = document.getElementById("audience-definition");
    if (!definition.value.trim()) definition.value = JSON.stringify(example.definition, null, 2);
  }

  function useExample(key) {
    const select = document.getElementById("audience-example");
    select.value = key;
    document.querySelector('#audience-form input[name=how][value=example]').checked = true;
    toggleHow();
    drawParams();
    const example = examples.find((e) => e.key === key);
    document.getElementById("audience-definition").value = JSON.stringify(example.definition, null, 2);
    const name = document.getElementById("audience-name");
    if (!name.value) name.value = exampleTitle(example);
    name.focus();
  }

  function toggleHow() {
    const how = document.querySelector("#audience-form input[name=how]:checked").value;
    document.getElementById("from-example").hidden = how !== "example";
    document.getElementById("from-definition").hidden = how !== "definition";
  }

  async function saveAudience(event) {
    event.preventDefault();
    const form = event.target;
    const status = document.getElementById("audience-status");
    status.className = "";
    const body = { source: sourceName(), name: form.elements.name.value };
    if (form.querySelector("input[name=how]:checked").value === "example") {
      body.example = form.elements.example.value;
      body.params = {};
      form.querySelectorAll("[data-param]").forEach((input) => {
        if (input.value.trim() !== "") body.params[input.dataset.param] = input.value.trim();
      });
    } else {
      try {
        body.definition = JSON.parse(form.elements.definition.value);
      } catch (error) {
        status.className = "error";
        status.textContent = t("The definition is not valid JSON: %(error)s", { error: error.message });
        return;
      }
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.textContent = t("Saving…");
    try {
      const saved = await send("POST", "/api/v1/audiences", body);
      const counted = await query({ kind: "audience", name: saved.name, limit: 0 });
      status.textContent = t("Saved %(name)s: %(n)s members.", { name: saved.name, n: fmt.number(counted.count) });
      savedVersion += 1;
      setState({ audience: saved.name, example: null, aud_offset: null });
    } catch (error) {
      status.className = "error";
      status.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  async function loadMembers() {
    const s = state();
    const box = document.getElementById("members");
    const title = document.getElementById("members-title");
    document.querySelectorAll("#audiences tbody tr").forEach((tr) => {
      if (tr.dataset.audience === s.audience) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    });
    let base;
    if (s.audience) {
      base = { kind: "audience", name: s.audience };
      title.textContent = t("Members of %(name)s", { name: s.audience });
    } else if (s.example) {
      const example = (await loadExamples()).find((e) => e.key === s.example);
      if (!example) return;
      base = { kind: "audience", definition: example.definition };
      title.textContent = t("Members of %(name)s", { name: exampleTitle(example) });
    } else {
      box.replaceChildren();
      title.textContent = t("Members");
      document.getElementById("members-hint").hidden = false;
      return;
    }
    document.getElementById("members-hint").hidden = true;
    const offset = offsetOf("aud_offset");
    const result = await busy(box, query(Object.assign({ limit: PAGE, offset }, base)));
    box.dataset.count = String(result.count);
    table(box, [
      { key: "person", label: t("Customer"), format: (v, row) => personLink(v, row) },
      { key: "user_id", label: t("User id"), format: (v) => el("span", v || "–", "ltr") },
      { key: "orders", label: t("Orders"), unit: "count" },
      { key: "revenue", label: t("Revenue"), unit: "money" },
      { key: "last_order_ts", label: t("Last order"), format: (v) => when(v) },
      { key: "last_seen", label: t("Last seen"), format: (v) => when(v) },
    ], result.members, { caption: t("%(n)s members as of %(date)s", { n: fmt.number(result.count), date: fmt.date(result.as_of) }) });
    pager(box, result.count, offset, "aud_offset");
    exportButtons(box, () => Object.assign({ limit: null }, base));
  }

  // -- lifetime value ---------------------------------------------------------------------------
  function groupLabel(by, value) {
    if (value === null || value === undefined) return t("Unknown");
    if (by === "cohort_month") return fmt.month(value);
    if (by === "rfm_segment") return segmentLabel(value);
    return t(value);
  }

  function kpi(label, value) {
    const box = el("article", null, "kpi");
    box.append(el("div", label, "label"), el("div", value, "value"));
    return box;
  }

  async function loadLtv() {
    const s = state();
    const mode = s.ltv_mode === "historical" ? "historical" : "predicted";
    const by = ["cohort_month", "first_channel", "rfm_segment"].includes(s.ltv_by) ? s.ltv_by : "cohort_month";
    document.getElementById("ltv-mode").value = mode;
    document.getElementById("ltv-by").value = by;
    if (!changed("ltv", [s.source, mode, by])) return;
    const kpis = document.getElementById("ltv-kpis");
    const groupsEl = document.getElementById("ltv-groups");
    const chartEl = document.getElementById("ltv-chart");
    const top = document.getElementById("ltv-top");
    const status = document.getElementById("ltv-status");
    [status, kpis, groupsEl, top].forEach((x) => x.replaceChildren());
    chartEl.hidden = true;
    // Predicted values need enough repeat buyers to fit the models: the error says so, in place.
    let result;
    try {
      result = await busy(status, query({ kind: "ltv", mode, group_by: by, limit: 10 }));
    } catch (error) {
      if (error.code === "invalid_query" && /'ltv'/.test(error.message)) await ltvWithoutTheLtvQuery(status, top);
      return;
    }
    chartEl.hidden = false;
    const predicted = mode === "predicted";
    const perCustomer = predicted ? "mean_predicted_value" : "net_revenue_per_customer";
    if (predicted) {
      kpis.append(
        kpi(t("Customers"), fmt.number(result.customers)),
        kpi(t("Predicted value, next %(days)s days", { days: fmt.number(result.horizon_days) }), money(result.predicted_value)),
        kpi(t("Predicted value per customer"), money(result.mean_predicted_value)),
        kpi(t("Expected purchases"), fmt.number(result.expected_purchases, 0)),
        kpi(t("Customers expected to be active"), fmt.number(result.expected_active, 0)),
      );
    } else {
      kpis.append(
        kpi(t("Customers"), fmt.number(result.customers)),
        kpi(t("Net revenue"), money(result.net_revenue)),
        kpi(t("Net revenue per customer"), money(result.net_revenue_per_customer)),
        kpi(t("Value in the first %(n)s months", { n: fmt.number(3) }), money(result.value_3m_per_customer)),
        kpi(t("Value in the first %(n)s months", { n: fmt.number(12) }), money(result.value_12m_per_customer)),
      );
    }
    const groups = result.groups || [];
    chart(chartEl, {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => money(v) },
      grid: { left: 40, right: 40, top: 16, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: groups.map((g) => groupLabel(by, g[by])), axisLabel: { interval: 0, rotate: groups.length > 6 ? 30 : 0 } },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt.compactMoney(v) } },
      series: [{ type: "bar", name: t("Per customer"), data: groups.map((g) => Number(g[perCustomer]) || 0) }],
      ariaLabel: t("Lifetime value per customer by group"),
    });
    const columns = [{ key: by, label: t("Group"), format: (v) => groupLabel(by, v) }, { key: "customers", label: t("Customers"), unit: "count" }];
    if (predicted) {
      columns.push(
        { key: "mean_p_alive", label: t("Chance still active (mean)"), unit: "rate" },
        { key: "expected_purchases", label: t("Expected purchases"), unit: "count", format: (v) => fmt.number(v, 1) },
        { key: "predicted_value", label: t("Predicted value"), unit: "money" },
        { key: "mean_predicted_value", label: t("Per customer"), unit: "money" },
      );
    } else {
      columns.push(
        { key: "orders", label: t("Orders"), unit: "count" },
        { key: "net_revenue", label: t("Net revenue"), unit: "money" },
        { key: "net_revenue_per_customer", label: t("Per customer"), unit: "money" },
        { key: "value_3m_per_customer", label: t("First %(n)s months", { n: fmt.number(3) }), unit: "money" },
        { key: "value_12m_per_customer", label: t("First %(n)s months", { n: fmt.number(12) }), unit: "money" },
      );
    }
    table(groupsEl, columns, groups);
    exportButtons(groupsEl, () => ({ kind: "ltv", mode, group_by: by, limit: 0 }));
    const topColumns = [{ key: "person", label: t("Customer"), format: (v, row) => personLink(v, row) }];
    if (predicted) {
      topColumns.push(
        { key: "predicted_value", label: t("Predicted value"), unit: "money" },
        { key: "p_alive", label: t("Chance still active"), unit: "rate" },
        { key: "expected_purchases", label: t("Expected purchases"), unit: "count", format: (v) => fmt.number(v, 1) },
        { key: "frequency", label: t("Repeat purchases"), unit: "count" },
      );
    } else {
      topColumns.push(
        { key: "net_revenue", label: t("Net revenue"), unit: "money" },
        { key: "orders", label: t("Orders"), unit: "count" },
        { key: "first_day", label: t("First order"), format: (v) => fmt.date(v) },
      );
    }
    table(top, topColumns, result.rows || [], { caption: t("The %(n)s most valuable of %(total)s customers", { n: fmt.number((result.rows || []).length), total: fmt.number(result.total) }) });
    exportButtons(top, () => ({ kind: "ltv", mode, limit: null }));
  }

  /* A server without the ltv query: the customers' value to date (RFM's monetary, net of refunds). */
  async function ltvWithoutTheLtvQuery(status, top) {
    document.getElementById("ltv-controls").hidden = true;
    document.getElementById("ltv-groups-card").hidden = true;
    status.replaceChildren(el("p", t("This server has no lifetime value query yet: the customers' value to date is below, and each profile shows its predicted value."), "muted"));
    const result = await busy(top, query({ kind: "rfm_customers", limit: 10 }));
    table(top, [
      { key: "person", label: t("Customer"), format: (v, row) => personLink(v, row) },
      { key: "monetary", label: t("Net revenue"), unit: "money" },
      { key: "frequency", label: t("Orders"), unit: "count" },
      { key: "segment", label: t("RFM segment"), format: (v) => segmentLabel(v) },
    ], result.customers, { caption: t("The %(n)s most valuable of %(total)s customers", { n: fmt.number(result.customers.length), total: fmt.number(result.total) }) });
    exportButtons(top, () => ({ kind: "rfm_customers", limit: null }));
  }

  // -- the customer profile ---------------------------------------------------------------------
  function dl(pairs) {
    const list = el("dl", null, "facts");
    pairs.forEach(([term, value]) => {
      list.appendChild(el("dt", term));
      const dd = el("dd");
      if (value instanceof Node) dd.appendChild(value);
      else dd.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
      list.appendChild(dd);
    });
    return list;
  }

  function card(title, ...children) {
    const section = el("section", null, "card");
    section.appendChild(el("h3", title));
    children.forEach((c) => section.appendChild(c));
    return section;
  }

  async function loadProfile() {
    const s = state();
    if (!s.person) return;
    if (!changed("profile", [s.source, s.person, s.by])) return;
    const box = document.getElementById("profile");
    const q = { kind: "customer", person: s.by === "person" && /^\d+$/.test(s.person) ? Number(s.person) : s.person, timeline_limit: 100 };
    if (["person", "user_id", "email", "anonymous_id"].includes(s.by)) q.by = s.by;
    const c = await busy(box, query(q));
    document.getElementById("find-person").value = s.person;
    box.dataset.person = String(c.person);
    const ids = c.identity;
    const v = c.value;
    const head = el("header", null, "profile-head");
    const name = el("h2");
    if (ids.email || ids.user_id) name.appendChild(el("span", ids.email || ids.user_id, "ltr"));
    else name.textContent = t("Person %(id)s", { id: c.person });
    head.append(name,
      el("p", t("Person %(id)s, as of %(date)s", { id: c.person, date: fmt.date(c.as_of) }), "muted"));
    const kpis = el("div", null, "grid");
    kpis.append(
      kpi(t("Lifetime value (net of refunds)"), money(v.lifetime_value)),
      kpi(t("Orders"), fmt.number(v.orders)),
      kpi(t("Average order value"), money(v.average_order_value)),
      kpi(t("Days since last order"), v.days_since_last_order === null ? "–" : fmt.number(v.days_since_last_order)),
    );
    const rfm = kpi(t("RFM segment"), c.rfm ? segmentLabel(c.rfm.segment) : "–");
    rfm.dataset.segment = c.rfm ? c.rfm.segment : "";
    if (c.rfm) {
      rfm.appendChild(el("div", t("R %(r)s · F %(f)s · M %(m)s", {
        r: fmt.number(c.rfm.r), f: fmt.number(c.rfm.f), m: c.rfm.m === null ? "–" : fmt.number(c.rfm.m),
      }), "change"));
    }
    const predicted = kpi(t("Predicted value, next %(weeks)s weeks", { weeks: fmt.number(c.prediction ? c.prediction.horizon_weeks : 52) }),
      c.prediction ? money(c.prediction.predicted_value) : "–");
    if (c.prediction) {
      predicted.appendChild(el("div", t("Chance still active: %(p)s", { p: fmt.percent(c.prediction.p_alive) }), "change"));
    } else if (c.prediction_note) {
      // The engine's reason is an English sentence: kept apart, left to right, for Arabic pages.
      const note = el("div", t("No prediction:") + " ", "change muted");
      const reason = el("span", c.prediction_note, "ltr");
      reason.lang = "en";
      note.appendChild(reason);
      predicted.appendChild(note);
    }
    kpis.append(rfm, predicted);

    const identity = card(t("Identity"), dl([
      [t("Person id"), fmt.number(c.person)],
      [t("User id"), el("span", ids.user_id || "–", "ltr")],
      [t("Email"), el("span", ids.email || "–", "ltr")],
      [t("Anonymous ids"), el("span", ids.anonymous_ids.join(", ") || "–", "ltr")],
      [t("First seen"), when(c.first_seen)],
      [t("First channel"), c.first_channel ? t(c.first_channel) : "–"],
      [t("First campaign"), el("span", c.first_campaign || "–", "ltr")],
      [t("Signed up"), when(c.signup_ts)],
      [t("Last seen"), when(c.last_seen)],
    ]));
    const traits = Object.entries(c.traits || {});
    const traitsBox = traits.length
      ? dl(traits.map(([k, val]) => [k, el("span", typeof val === "string" ? val : JSON.stringify(val), "ltr")]))
      : el("p", t("No traits."), "muted");
    traitsBox.classList.add("traits");
    const audiences = el("p");
    if (c.audiences.length) c.audiences.forEach((name) => audiences.appendChild(el("span", name, "pill")));
    else audiences.textContent = t("In no saved audience.");
    const about = card(t("Traits"), traitsBox, el("h3", t("Audiences")), audiences);
    const sides = el("div", null, "grid-2");
    sides.append(identity, about);

    const ordersBox = el("div", null, "orders");
    table(ordersBox, [
      { key: "order_key", label: t("Order"), format: (val) => el("span", val, "ltr") },
      { key: "ts", label: t("Placed"), format: (val) => when(val) },
      { key: "value", label: t("Value"), unit: "money" },
      { key: "refunded", label: t("Refunded"), unit: "money" },
      { key: "status", label: t("Status"), format: (val) => STATUSES[val] || val },
      { key: "items", label: t("Items"), unit: "count" },
      { key: "channel", label: t("Channel"), format: (val) => (val ? t(val) : "–") },
    ], c.orders);
    ordersBox.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.order = c.orders[i].order_key; });
    if (!c.orders.length) ordersBox.replaceChildren(el("p", t("No order up to this day."), "muted"));
    ordersBox.appendChild(el("p", t("The export holds the timeline, orders included."), "muted"));
    const timelineQuery = () => ({ kind: "customer", person: c.person, by: "person", timeline_limit: 10000, predict: false });
    exportButtons(ordersBox, timelineQuery);
    const orders = card(t("Orders"), ordersBox);

    const list = el("ol", null, "timeline");
    c.timeline.forEach((e) => {
      const item = el("li");
      if (e.order) item.classList.add("order");
      const time = el("time", when(e.ts));
      time.dateTime = e.ts;
      const what = el("span", e.event || e.type, "event ltr");
      item.append(time, what);
      if (e.order) {
        item.appendChild(el("span", t("Order %(id)s: %(value)s, %(status)s", {
          id: e.order.order_key, value: money(e.order.value), status: STATUSES[e.order.status] || e.order.status,
        }), "detail"));
      } else {
        const details = Object.entries(e.properties).map(([k, val]) => k + " " + val).join(", ");
        if (details) item.appendChild(el("span", details, "detail ltr"));
      }
      if (e.channel) item.appendChild(el("span", t(e.channel), "pill"));
      list.appendChild(item);
    });
    // A long timeline scrolls in its own region (reachable by keyboard).
    const scroller = el("div", null, "timeline-box");
    scroller.tabIndex = 0;
    scroller.setAttribute("role", "region");
    scroller.setAttribute("aria-label", t("Timeline"));
    scroller.appendChild(list);
    const timelineBox = el("div");
    timelineBox.append(
      el("p", t("The latest %(shown)s of %(total)s events, newest first.", { shown: fmt.number(c.timeline.length), total: fmt.number(c.events) }), "muted"),
      scroller,
    );
    exportButtons(timelineBox, timelineQuery);
    const timeline = card(t("Timeline"), timelineBox);
    box.replaceChildren(head, kpis, sides, orders, timeline);
  }

  // -- the page ---------------------------------------------------------------------------------
  async function load() {
    const tab = currentTab();
    showTab(tab);
    try {
      if (tab === "rfm") await loadRfm();
      else if (tab === "audiences") await loadAudiences();
      else if (tab === "ltv") await loadLtv();
      else await loadProfile();
    } catch (error) {
      // busy() shows the error where the data would be; the page stays usable.
      if (!(error instanceof window.masar.QueryError)) throw error;
    } finally {
      await window.masar.drawn();
      document.body.dataset.loaded = "customers-" + tab;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    wireTabs();
    document.getElementById("find").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = document.getElementById("find-person").value.trim();
      if (text) setState({ tab: "profile", person: text, by: null });
    });
    document.getElementById("ltv-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      setState({ ltv_mode: document.getElementById("ltv-mode").value, ltv_by: document.getElementById("ltv-by").value });
    });
    const form = document.getElementById("audience-form");
    if (form) {
      form.addEventListener("submit", saveAudience);
      form.querySelectorAll("input[name=how]").forEach((r) => r.addEventListener("change", toggleHow));
    }
    try {
      const found = (await getJson("/api/v1/sources")).find((x) => x.name === sourceName());
      if (found && found.timezone) zone = found.timezone;
    } catch (error) {
      /* times stay in UTC */
    }
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
