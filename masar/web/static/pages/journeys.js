/* Journeys: the paths people took after a step, before it, after dropping out of a funnel step,
 * or from their first event — a Sankey of how they move from one event to the next and a table
 * of the most common paths. State in the URL: mode (after | before | dropped | start), step,
 * template | q and dropped_after (the funnel of "dropped"), length, window, from, to.
 *
 * Right to left, the Sankey runs from right to left too: each node's column is counted from the
 * right and every link is drawn reversed (ECharts lays links out from source to target), with
 * the tooltip still naming the events in time order.
 */
(function () {
  "use strict";
  const { t, query, getJson, fmt, chart, drawn, table, busy, state, setState, exportButtons, config, rtl, palette } = window.masar;
  const choice = window.masar.funnelChoice;
  const ARROW = rtl ? " ← " : " → ";
  const OTHER = "$other";
  const MODES = ["after", "before", "dropped", "start"];
  const isolate = (text) => "\u2068" + text + "\u2069";
  let names = null;

  const source = () => state().source || config.source;
  const mode = (s) => (MODES.includes(s.mode) ? s.mode : "after");

  async function eventNames() {
    if (!names) names = await getJson("/api/v1/event-names?source=" + encodeURIComponent(source()));
    return names;
  }

  /* Without a step in the URL, the store's "Product Added", else its most frequent event. */
  async function anchor(s) {
    if (s.step) return s.step;
    const list = await eventNames();
    const added = list.find((e) => e.name === "Product Added");
    return added ? added.name : list.length ? list[0].name : null;
  }

  async function pathsQuery(s) {
    const q = { kind: "paths", length: Number(s.length) || 5 };
    if (s.window && s.window !== "1d") q.window = s.window;
    if (s.from) q.from = s.from;
    if (s.to) q.to = s.to;
    const m = mode(s);
    if (m === "after" || m === "before") {
      q.step = await anchor(s);
      q.direction = m;
      if (!q.step) throw new Error(t("This store has no events yet."));
    } else if (m === "dropped") {
      const f = await choice.funnel(s);
      q.funnel = { dropped_after: Number(s.dropped_after) || 1 };
      ["steps", "window", "order", "exclusions"].forEach((k) => {
        if (f[k] !== undefined) q.funnel[k] = f[k];
      });
    }
    return q;
  }

  /* An event's name as shown: the catalogue's when it has one (as the Funnels page does). */
  function display(label) {
    return label === OTHER ? t("Other events") : t(label);
  }

  /* The chart's element holds only the chart: messages and progress go to its status line. */
  async function sankey(el, status, result) {
    const nodes = result.sankey.nodes;
    el.hidden = !nodes.length;
    if (!nodes.length) {
      status.textContent = t("No paths in this range.");
      return;
    }
    const positions = nodes.map((n) => n.position);
    const lo = Math.min(...positions);
    const hi = Math.max(...positions);
    const labels = [...new Set(nodes.map((n) => n.label).filter((l) => l !== OTHER))];
    const colour = (label) => (label === OTHER ? "#9aa5b1" : palette[labels.indexOf(label) % palette.length]);
    const byId = Object.fromEntries(nodes.map((n) => [n.id, n]));
    const data = nodes.map((n) => ({
      name: n.id, value: n.count, depth: rtl ? hi - n.position : n.position - lo,
      label: { formatter: () => display(n.label) }, itemStyle: { color: colour(n.label) },
    }));
    const links = result.sankey.edges.map((e) =>
      rtl ? { source: e.target, target: e.source, value: e.count, from: e.source, to: e.target }
        : { source: e.source, target: e.target, value: e.count, from: e.source, to: e.target },
    );
    const side = 170;
    const instance = await chart(el, {
      tooltip: {
        trigger: "item",
        formatter: (p) => {
          if (p.dataType === "edge") {
            const from = display(byId[p.data.from].label);
            const to = display(byId[p.data.to].label);
            return escape(isolate(from) + ARROW + isolate(to)) + "<br>" + escape(t("%(n)s paths", { n: fmt.number(p.data.value) }));
          }
          const n = byId[p.data.name];
          const lines = [escape(display(n.label)), escape(t("%(n)s paths", { n: fmt.number(n.count) }))];
          if (n.ends) lines.push(escape(t("%(n)s end here", { n: fmt.number(n.ends) })));
          return lines.join("<br>");
        },
      },
      series: [{
        type: "sankey", data, links, nodeAlign: rtl ? "right" : "left", layoutIterations: 32, draggable: false,
        left: rtl ? side : 8, right: rtl ? 8 : side, top: 8, bottom: 8,
        label: { position: rtl ? "left" : "right", width: side - 12, overflow: "truncate" },
        lineStyle: { color: rtl ? "target" : "source", opacity: 0.35, curveness: 0.5 },
        emphasis: { focus: "adjacency" },
      }],
      ariaLabel: t("Sankey diagram of the paths; the table of the most common paths gives the same journeys as text"),
    });
    // A node's event becomes the step to look after (the table is the keyboard's way to the same).
    instance.off("click");
    instance.on("click", (p) => {
      if (p.dataType !== "node") return;
      const label = byId[p.data.name].label;
      if (label !== OTHER) setState({ mode: "after", step: label, q: null, template: null, dropped_after: null });
    });
  }

  function escape(text) {
    const div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML;
  }

  function pathsTable(el, result) {
    const rows = result.paths.map((p, i) => ({
      rank: fmt.number(i + 1), path: p.events.map((e) => isolate(display(e))).join(ARROW), count: p.count, share: p.share,
    }));
    if (result.other_paths.count) {
      rows.push({
        rank: "", path: t("%(n)s other paths", { n: fmt.number(result.other_paths.paths) }),
        count: result.other_paths.count, share: null,
      });
    }
    table(el, [
      { key: "rank", label: t("Rank") },
      { key: "path", label: t("Path") },
      { key: "count", label: t("Paths"), unit: "count" },
      { key: "share", label: t("Share"), unit: "rate" },
    ], rows);
  }

  function note(result) {
    const range = result.range.from || result.range.to
      ? t("%(from)s to %(to)s", { from: fmt.date(result.range.from), to: fmt.date(result.range.to) })
      : t("all dates");
    if (result.funnel) {
      return t("%(dropped)s of %(entered)s people who entered the funnel dropped out after %(step)s (%(range)s): what they did next.", {
        dropped: fmt.number(result.funnel.dropped), entered: fmt.number(result.funnel.entered),
        step: isolate(display(result.funnel.step)), range,
      });
    }
    return t("%(total)s paths of %(people)s people (%(range)s).", {
      total: fmt.number(result.total), people: fmt.number(result.people), range,
    });
  }

  function loops(result) {
    const found = result.loops;
    if (!found.paths) return t("No path comes back to an event it had left.");
    return t("%(share)s of paths come back to an event they had left; most often %(loop)s.", {
      share: fmt.percent(found.share), loop: found.top[0].events.map((e) => isolate(display(e))).join(ARROW),
    });
  }

  async function fillControls(s) {
    const m = mode(s);
    document.getElementById("mode").value = m;
    document.querySelectorAll("[data-for]").forEach((el) => {
      el.hidden = !el.dataset.for.split(" ").includes(m);
    });
    const list = await eventNames();
    const datalist = document.getElementById("event-names");
    if (!datalist.children.length) {
      datalist.replaceChildren(...list.map((e) => {
        const o = document.createElement("option");
        o.value = e.name;
        o.label = t("%(n)s events", { n: fmt.number(e.count) });
        return o;
      }));
    }
    document.getElementById("step").value = m === "after" || m === "before" ? (await anchor(s)) || "" : s.step || "";
    document.getElementById("length").value = String(Number(s.length) || 5);
    document.getElementById("window").value = s.window || "1d";
    document.getElementById("from").value = s.from || "";
    document.getElementById("to").value = s.to || "";
    if (m === "dropped") {
      await choice.fillSelect(document.getElementById("template"), s);
      await fillSteps(s);
    }
  }

  async function fillSteps(s) {
    const select = document.getElementById("dropped-after");
    const f = await choice.funnel(s);
    select.replaceChildren(...f.steps.slice(0, -1).map((step, i) => {
      const o = document.createElement("option");
      o.value = String(i + 1);
      o.textContent = t("Step %(n)s: %(step)s", { n: fmt.number(i + 1), step: t(choice.stepLabel(step)) });
      return o;
    }));
    select.value = String(Number(s.dropped_after) || 1);
  }

  async function load() {
    const s = state();
    const flow = document.getElementById("sankey");
    const status = document.getElementById("sankey-status");
    const paths = document.getElementById("paths");
    let q;
    try {
      await fillControls(s);
      q = await pathsQuery(s);
    } catch (error) {
      await busy(status, Promise.reject(error)).catch(() => {});
      flow.hidden = true;
      document.body.dataset.loaded = "journeys";
      return;
    }
    let result;
    try {
      status.replaceChildren();
      result = await busy(status, query(q));
    } catch (error) {
      flow.hidden = true;
      paths.replaceChildren();
      document.getElementById("loops").textContent = "";
      document.body.dataset.loaded = "journeys";
      return;
    }
    document.getElementById("journeys-note").textContent = note(result);
    await sankey(flow, status, result);
    document.getElementById("sankey-note").textContent = t(
      "Each column is one event further along the path; a band is as wide as the paths that take it. Other events gathers the smaller events of a column.",
    );
    pathsTable(paths, result);
    exportButtons(paths, () => q);
    const exp = document.getElementById("sankey-export");
    exp.replaceChildren();
    exportButtons(exp, () => q);
    document.getElementById("loops").textContent = loops(result);
    await drawn();
    document.body.dataset.loaded = "journeys";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("journeys-form");
    document.getElementById("mode").addEventListener("change", async (e) => {
      const m = e.target.value;
      document.querySelectorAll("[data-for]").forEach((el) => {
        el.hidden = !el.dataset.for.split(" ").includes(m);
      });
      if (m === "dropped") {
        await choice.fillSelect(document.getElementById("template"), state());
        await fillSteps(state());
      }
    });
    document.getElementById("template").addEventListener("change", () => {
      fillSteps(Object.assign({}, state(), choice.pickedState(document.getElementById("template")), { dropped_after: 1 }));
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const m = document.getElementById("mode").value;
      const changes = {
        mode: m === "after" ? null : m,
        step: m === "after" || m === "before" ? document.getElementById("step").value.trim() : null,
        length: document.getElementById("length").value === "5" ? null : document.getElementById("length").value,
        window: document.getElementById("window").value === "1d" ? null : document.getElementById("window").value,
        from: document.getElementById("from").value, to: document.getElementById("to").value,
        template: null, q: null, dropped_after: null,
      };
      if (m === "dropped") {
        Object.assign(changes, choice.pickedState(document.getElementById("template")), {
          dropped_after: document.getElementById("dropped-after").value,
        });
      }
      setState(changes);
    });
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
