/* Leaks: where, for whom and since when a funnel's step conversion fell, and what it cost. The
 * funnel is a template (default "store") or the funnel given in the URL as `q` (a FunnelQuery's
 * JSON, as the Funnels page writes it). Each finding links to the Funnels page (the same funnel,
 * the segment as a breakdown at the step it is about), to the people who dropped out, and to
 * what drop-outs did next (Journeys). State in the URL: template | q, from, to, counting,
 * segment_by, people (the finding whose people are shown, 1-based).
 */
(function () {
  "use strict";
  const { t, query, fmt, table, busy, state, setState, exportButtons, config } = window.masar;
  const text = window.masar.leaks;
  const choice = window.masar.funnelChoice;
  const { stepLabel } = choice;
  // The parts of a FunnelQuery that define the funnel itself (not its range, counting or view).
  const FUNNEL_FIELDS = choice.FIELDS;
  let last = { key: null, result: null };

  const source = () => state().source || config.source;

  function range(s) {
    const fromLink = choice.fromLink(s);
    return { from: s.from || (fromLink && fromLink.from) || null, to: s.to || (fromLink && fromLink.to) || null };
  }

  function leaksQuery(s, f) {
    const q = Object.assign({ kind: "leaks" }, f);
    const r = range(s);
    if (r.from) q.from = r.from;
    if (r.to) q.to = r.to;
    if (s.counting) q.counting = s.counting;
    const extra = (s.segment_by || "").split(",").map((x) => x.trim()).filter(Boolean);
    if (extra.length) q.segment_by = extra;
    return q;
  }

  /* The funnel a finding is about, as the Funnels page's `q` (a funnel query without kind and
   * source): the same steps and counting, the finding's period (else the page's range), and its
   * segment as a breakdown at the step it starts from — the breakdown's row for the segment's
   * value then shows the finding's entrants and conversions. */
  function findingFunnel(f, q, result, finding) {
    const out = {};
    FUNNEL_FIELDS.forEach((k) => {
      if (f[k] !== undefined) out[k] = f[k];
    });
    out.counting = result.counting;
    const p = finding.period;
    if (p) {
      out.from = p.start;
      out.to = p.end;
    } else {
      if (q.from) out.from = q.from;
      if (q.to) out.to = q.to;
    }
    const a = f.steps.findIndex((step) => stepLabel(step) === finding.step_from);
    if (finding.segment && finding.segment.property !== "customer" && a >= 0) {
      // The leak finder tests the max_values largest values (by entrants at step a); the
      // breakdown ranks values the same way, plus one row for "no value": so this many rows
      // always hold the finding's segment.
      const limit = Math.min(200, (result.parameters.max_values || 50) + 1);
      out.breakdown = { property: finding.segment.property, attribution: "step", step: a + 1, limit };
    }
    return out;
  }

  function peopleQuery(fq, f, finding, limit) {
    const b = f.steps.findIndex((step) => stepLabel(step) === finding.step_to);
    const q = Object.assign({}, fq, { kind: "funnel_people", step: b + 1, status: "dropped", limit });
    if (fq.breakdown) q.breakdown_value = finding.segment.value;
    return q;
  }

  function href(path, params) {
    const out = new URLSearchParams();
    Object.entries(params).forEach(([k, v]) => {
      if (v !== null && v !== undefined && v !== "") out.set(k, typeof v === "object" ? JSON.stringify(v) : String(v));
    });
    return path + "?" + out;
  }

  function fact(label, value, field) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.field = field;
    box.append(dt, dd);
    return box;
  }

  function relatedText(r, counting) {
    const parts = [text.who({ segment: r.segment }, counting)];
    const when = text.period(r.period);
    if (when) parts.push(when);
    parts.push(fmt.percent(r.conversion, 0));
    return parts.reduce((first, then) => t("%(first)s, %(then)s", { first, then }));
  }

  function card(f, q, result, finding, index) {
    const s = state();
    const li = document.createElement("li");
    li.className = "card finding";
    li.dataset.index = String(index);
    const sentence = document.createElement("h3");
    sentence.className = "sentence";
    sentence.textContent = text.sentence(finding, { counting: result.counting, lastStep: text.lastStep(result) });
    const facts = document.createElement("dl");
    facts.className = "facts";
    const ownDays = !finding.segment || finding.segment.property === "customer";
    facts.append(
      fact(finding.segment ? t("Conversion in the segment") : t("Conversion in the period"),
        t("%(rate)s (%(converted)s of %(entrants)s)", {
          rate: fmt.percent(finding.conversion), converted: fmt.number(finding.converted), entrants: fmt.number(finding.entrants),
        }), "conversion"),
      fact(ownDays ? t("On other days") : t("Elsewhere"),
        t("%(rate)s (of %(entrants)s)", { rate: fmt.percent(finding.baseline_conversion), entrants: fmt.number(finding.baseline_entrants) }),
        "baseline"),
      fact(t("When"), text.period(finding.period) || t("Throughout %(range)s", {
        range: text.period({ start: result.range.from, end: result.range.to }) || "–",
      }), "period"),
      fact(t("Lost conversions"), fmt.number(finding.lost_conversions), "lost-conversions"),
      fact(t("Lost orders"), fmt.number(finding.lost_orders), "lost-orders"),
      fact(t("Lost revenue"), fmt.money(finding.lost_revenue, finding.currency || result.currency), "lost-revenue"),
      fact(t("Adjusted p-value"), finding.p_value < 0.001 ? "< " + fmt.number(0.001, 3) : fmt.number(finding.p_value, 3), "p-value"),
    );
    li.append(sentence, facts);
    if (finding.related && finding.related.length) {
      const related = document.createElement("p");
      related.className = "muted";
      related.textContent = t("Also lower, explained by this one: %(list)s", {
        list: finding.related.map((r) => relatedText(r, result.counting)).join(" · "),
      });
      li.appendChild(related);
    }
    const fq = findingFunnel(f, q, result, finding);
    const links = document.createElement("p");
    links.className = "finding-links";
    const toFunnel = document.createElement("a");
    toFunnel.dataset.link = "funnel";
    toFunnel.href = href("/funnels", { source: source(), q: fq });
    toFunnel.textContent = finding.segment && fq.breakdown ? t("Open the funnel, broken down by this segment") : t("Open the funnel");
    links.appendChild(toFunnel);
    if (!finding.segment || fq.breakdown) {
      const people = document.createElement("a");
      people.dataset.link = "people";
      people.href = href(location.pathname, Object.assign({}, s, { people: index }));
      people.textContent = t("Who dropped out");
      people.addEventListener("click", (e) => {
        e.preventDefault();
        setState({ people: index });
      });
      links.appendChild(people);
    }
    const a = f.steps.findIndex((step) => stepLabel(step) === finding.step_from);
    const b = f.steps.findIndex((step) => stepLabel(step) === finding.step_to);
    if (a >= 0 && b === a + 1) {
      const journeys = document.createElement("a");
      journeys.dataset.link = "journeys";
      const pathFunnel = {};
      ["steps", "window", "order", "exclusions"].forEach((k) => {
        if (f[k] !== undefined) pathFunnel[k] = f[k];
      });
      journeys.href = href("/journeys", {
        source: source(), mode: "dropped", q: pathFunnel, dropped_after: a + 1, from: fq.from, to: fq.to,
      });
      journeys.textContent = t("What people did after dropping out here");
      links.appendChild(journeys);
    }
    li.appendChild(links);
    return li;
  }

  async function showPeople(f, q, result) {
    const panel = document.getElementById("people-panel");
    const index = Number(state().people);
    const finding = index ? (result.findings || [])[index - 1] : null;
    if (!finding) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const fq = findingFunnel(f, q, result, finding);
    const about = t("%(who)s: %(from)s → %(to)s", {
      who: text.who(finding, result.counting), from: text.step(finding.step_from), to: text.step(finding.step_to),
    });
    document.getElementById("people-title").textContent = t("Who dropped out: %(finding)s", { finding: about });
    const el = document.getElementById("people");
    const found = await busy(el, query(peopleQuery(fq, f, finding, 25)));
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = found.total > found.people.length
      ? t("The latest %(shown)s of %(total)s; export for all of them.", { shown: fmt.number(found.people.length), total: fmt.number(found.total) })
      : t("%(total)s in all.", { total: fmt.number(found.total) });
    const holder = document.createElement("div");
    table(holder, [
      { key: "user_id", label: t("User id"), format: (v, row) => v || (row.anonymous_ids[0] ? t("anonymous %(id)s", { id: row.anonymous_ids[0] }) : "–") },
      { key: "deepest_step", label: t("Deepest step"), format: (v) => text.step(stepLabel(f.steps[v - 1])) },
      { key: "last_step_at", label: t("Reached it at"), format: (v) => new Intl.DateTimeFormat(config.intl, { dateStyle: "medium", timeStyle: "short" }).format(new Date(v)) },
    ], found.people);
    el.replaceChildren(note, holder);
    exportButtons(el, () => peopleQuery(fq, f, finding, 100000));
  }

  async function fillControls(s) {
    await choice.fillSelect(document.getElementById("template"), s);
    const r = range(s);
    document.getElementById("from").value = r.from || "";
    document.getElementById("to").value = r.to || "";
    document.getElementById("counting").value = s.counting || "sessions";
    document.getElementById("segment-by").value = s.segment_by || "";
  }

  async function load() {
    const s = state();
    const el = document.getElementById("findings");
    const note = document.getElementById("leaks-note");
    let f;
    let q;
    try {
      await fillControls(s);
      f = await choice.funnel(s);
      q = leaksQuery(s, f);
    } catch (error) {
      await busy(el, Promise.reject(error)).catch(() => {});
      document.body.dataset.loaded = "leaks";
      return;
    }
    const key = JSON.stringify([source(), q]);
    let result = last.key === key ? last.result : null;
    if (!result) {
      try {
        result = await busy(el, query(q));
      } catch (error) {
        note.textContent = "";
        document.body.dataset.loaded = "leaks";
        return;
      }
      last = { key, result };
    }
    const findings = result.findings || [];
    const units = { sessions: t("sessions"), uniques: t("people"), totals: t("attempts") };
    note.textContent = t("%(n)s findings from %(tests)s tests, %(from)s to %(to)s, counting %(unit)s", {
      n: fmt.number(findings.length), tests: fmt.number(result.tests),
      from: fmt.date(result.range.from), to: fmt.date(result.range.to), unit: units[result.counting],
    });
    if (!findings.length) {
      const none = document.createElement("p");
      none.textContent = t("No leaks: no segment or period converted clearly worse than the rest.");
      el.replaceChildren(none);
    } else {
      const list = document.createElement("ol");
      list.className = "findings";
      findings.forEach((finding, i) => list.appendChild(card(f, q, result, finding, i + 1)));
      el.replaceChildren(list);
    }
    const exp = document.getElementById("findings-export");
    exp.replaceChildren();
    exportButtons(exp, () => q);
    await showPeople(f, q, result).catch(() => {});
    document.body.dataset.loaded = "leaks";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("leaks-form").addEventListener("submit", (e) => {
      e.preventDefault();
      setState(Object.assign(choice.pickedState(document.getElementById("template")), {
        from: document.getElementById("from").value, to: document.getElementById("to").value,
        counting: document.getElementById("counting").value === "sessions" ? null : document.getElementById("counting").value,
        segment_by: document.getElementById("segment-by").value.trim(), people: null,
      }));
    });
    document.addEventListener("masar:state", () => load());
    load();
  });
})();
