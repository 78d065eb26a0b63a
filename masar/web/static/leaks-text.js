/* A leak finding as one sentence in the page's language, built from the finding's fields (the
 * engine's `summary` is English, for the CLI and logs). Used by the Leaks and Overview pages:
 *
 *   masar.leaks.sentence(finding, {counting, lastStep})   the whole sentence
 *   masar.leaks.who(finding, counting)                    "Sessions with browser Mobile Safari"
 *   masar.leaks.period(period)                            "5 – 19 Oct 2026", or null
 *
 * It says what the engine's summary says, with the same rules for what is left out (lost orders
 * only before the last step, amounts under one half). Names that come from the data (steps,
 * browsers, campaigns) are kept as they are, isolated (U+2068 … U+2069) so that a Latin name in
 * an Arabic sentence keeps its place and the arrow between two steps points the reading way.
 */
(function () {
  "use strict";
  const { t, fmt, config } = window.masar;
  const intl = config.intl || "en";
  const isolate = (text) => "\u2068" + text + "\u2069";

  const PROPERTIES = {
    device_type: t("device"), browser: t("browser"), os: t("OS"), channel: t("channel"),
    session_source: t("source"), session_campaign: t("campaign"), country: t("country"), category: t("category"),
  };
  const DEVICES = { mobile: t("mobile"), desktop: t("desktop"), tablet: t("tablet") };
  const ALL = { sessions: t("All sessions"), uniques: t("All people"), totals: t("All attempts") };
  let regions = null;
  try {
    regions = new Intl.DisplayNames([intl], { type: "region" });
  } catch (ignored) {
    /* an old browser: country codes stay codes */
  }

  /* A step's name: the catalogue's when it has one (as the Funnels page shows steps), isolated. */
  function step(name) {
    return isolate(t(name));
  }

  function propertyLabel(name) {
    return PROPERTIES[name] || isolate(name);
  }

  /* A segment's value as shown: channels and devices translated, countries named. */
  function valueLabel(property, value) {
    const text = String(value);
    if (property === "channel") return t(text);
    if (property === "device_type" && DEVICES[text]) return DEVICES[text];
    if (property === "country" && regions && /^[A-Z]{2}$/.test(text)) {
      try {
        return regions.of(text);
      } catch (ignored) {
        /* not a region code after all */
      }
    }
    return isolate(text);
  }

  function who(f, counting) {
    const seg = f.segment;
    const unit = counting in ALL ? counting : "sessions";
    if (!seg) return ALL[unit];
    if (seg.property === "customer") return seg.value === "returning" ? t("Returning customers") : t("New customers");
    // The msgids are spelled out where they are used so that extraction finds them.
    const values = { property: propertyLabel(seg.property), value: valueLabel(seg.property, seg.value) };
    if (unit === "uniques") return t("People with %(property)s %(value)s", values);
    if (unit === "totals") return t("Attempts with %(property)s %(value)s", values);
    return t("Sessions with %(property)s %(value)s", values);
  }

  function day(iso) {
    const [y, m, d] = iso.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d));
  }

  function period(p) {
    if (!p) return null;
    if (p.start === p.end) return t("on %(date)s", { date: fmt.date(p.start) });
    const format = new Intl.DateTimeFormat(intl, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
    return format.formatRange(day(p.start), day(p.end));
  }

  /* "about": a whole number to two significant figures, as the engine's summary rounds
   * (6,614 → 6,600; 6.1 → 6); below one, one decimal. */
  function about(value) {
    if (value < 1) return fmt.number(value, 1);
    return new Intl.NumberFormat(intl, { maximumSignificantDigits: 2 }).format(Math.round(value));
  }

  function aboutMoney(value, currency) {
    const cur = currency || config.currency || "USD";
    return new Intl.NumberFormat(intl, { style: "currency", currency: cur, maximumSignificantDigits: 2 }).format(Math.round(value));
  }

  function sentence(f, opts) {
    const options = opts || {};
    const values = {
      who: who(f, options.counting), from: step(f.step_from), to: step(f.step_to),
      conversion: fmt.percent(f.conversion, 0), baseline: fmt.percent(f.baseline_conversion, 0),
    };
    const againstOwnDays = !f.segment || f.segment.property === "customer";
    const parts = [
      againstOwnDays
        ? t("%(who)s: %(from)s → %(to)s %(conversion)s vs %(baseline)s on other days", values)
        : t("%(who)s: %(from)s → %(to)s %(conversion)s vs %(baseline)s elsewhere", values),
    ];
    const when = period(f.period);
    if (when) parts.push(when);
    parts.push(t("about %(n)s fewer reached %(step)s", { n: about(f.lost_conversions), step: step(f.step_to) }));
    if (f.lost_orders !== null && f.lost_orders !== undefined && f.step_to !== options.lastStep && f.lost_orders >= 0.5) {
      parts.push(t("about %(n)s lost orders", { n: about(f.lost_orders) }));
    }
    if (f.lost_revenue !== null && f.lost_revenue !== undefined && f.lost_revenue >= 0.5) {
      parts.push(t("about %(amount)s", { amount: aboutMoney(f.lost_revenue, f.currency) }));
    }
    return parts.reduce((first, then) => t("%(first)s, %(then)s", { first, then }));
  }

  /* The last step of the funnel a leaks result is about (lost orders are not repeated there). */
  function lastStep(result) {
    const steps = result.transitions || [];
    return steps.length ? steps[steps.length - 1].step_to : null;
  }

  window.masar.leaks = { sentence, who, period, propertyLabel, valueLabel, lastStep, isolate, step };
})();
