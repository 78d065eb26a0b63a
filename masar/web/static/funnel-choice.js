/* Which funnel a page analyses (Leaks, Journeys): one of the source's templates (URL `template`,
 * default "store") or the funnel given in the URL as `q`, a FunnelQuery's JSON as the Funnels
 * page writes it. masar.funnelChoice gives:
 *
 *   funnel(s)              {steps, window?, order?, exclusions?, hold_constant?} for state s
 *   fromLink(s)            the parsed `q` (null without one; an Error when it is not a funnel)
 *   fillSelect(select, s)  the picker's options (the templates, and "the funnel from the link")
 *   pickedState(select)    the URL changes for the picked option
 *   stepLabel(step)        a step's label, as the engine names it in results
 */
(function () {
  "use strict";
  const { t, getJson, state, config } = window.masar;
  const LINKED = "__link";
  const FIELDS = ["steps", "window", "order", "exclusions", "hold_constant"];
  const TITLES = {
    store: t("Store funnel: product to order"), aida: t("Awareness, Interest, Decision, Action"),
    marketing: t("Six-stage marketing funnel"), subscription: t("Trial to paid subscription"),
  };
  let cached = null;

  const source = () => state().source || config.source;

  function stepLabel(step) {
    if (typeof step === "string") return step;
    if (step.name) return step.name;
    if (step.event) return step.event;
    return (step.any_of || []).map((m) => m.event).join(" or ");
  }

  function fromLink(s) {
    if (!s.q) return null;
    let parsed = null;
    try {
      parsed = JSON.parse(s.q);
    } catch (ignored) {
      /* reported below */
    }
    if (!parsed || !Array.isArray(parsed.steps)) throw new Error(t("The funnel in the link is not valid."));
    return parsed;
  }

  async function templates() {
    if (!cached) cached = await getJson("/api/v1/funnel-templates?source=" + encodeURIComponent(source()));
    return cached;
  }

  async function funnel(s) {
    const linked = fromLink(s);
    const out = {};
    if (linked) {
      FIELDS.forEach((k) => {
        if (linked[k] !== undefined) out[k] = linked[k];
      });
      return out;
    }
    const name = s.template || "store";
    const found = (await templates()).find((x) => x.name === name);
    if (!found) throw new Error(t("There is no funnel template named %(name)s.", { name }));
    out.steps = found.steps;
    return out;
  }

  async function fillSelect(select, s) {
    const options = (await templates()).map((x) => {
      const o = document.createElement("option");
      o.value = x.name;
      o.textContent = x.customized ? x.name : TITLES[x.name] || x.title || x.name;
      return o;
    });
    if (s.q) {
      const o = document.createElement("option");
      o.value = LINKED;
      o.textContent = t("The funnel from the link");
      options.unshift(o);
    }
    select.replaceChildren(...options);
    select.value = s.q ? LINKED : s.template || "store";
  }

  function pickedState(select) {
    const picked = select.value;
    return {
      template: picked === LINKED || picked === "store" ? null : picked,
      q: picked === LINKED ? state().q : null,
    };
  }

  window.masar.funnelChoice = { funnel, fromLink, fillSelect, pickedState, stepLabel, templates, FIELDS };
})();
