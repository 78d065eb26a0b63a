/* Masar's dashboard core: no framework, no network but Masar's own.
 *
 * window.masar gives every page:
 *   t(msgid, values)        a label from the page's catalogue (server-sent), with %(name)s values
 *   query(q)                POST /api/v1/query with the session's CSRF token; rejects with the
 *                           server's one-sentence error
 *   download(q, format, url)  the query's table as CSV or Excel (POST /api/v1/export, or url)
 *   state / setState(obj)   the page's state, kept in its URL (shareable links)
 *   fmt.number/money/percent/date   Intl formatting in the page's locale and digits
 *   chart(el, option)       an ECharts chart (SVG), mirrored for right-to-left pages
 *   table(el, columns, rows)          an accessible table; numbers aligned to the end
 *   busy(el, promise)       shows progress while a computation runs, then its error if any
 */
(function () {
  "use strict";
  const config = window.MASAR || {};
  const catalog = config.t || {};
  const rtl = config.dir === "rtl";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function t(msgid, values) {
    let text = catalog[msgid] || msgid;
    if (values) {
      text = text.replace(/%\((\w+)\)s/g, (_, name) => (name in values ? String(values[name]) : ""));
    }
    return text;
  }

  class QueryError extends Error {
    constructor(message, code, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      let message = response.statusText;
      let code = "http_" + response.status;
      try {
        const data = await response.json();
        if (data && data.error) {
          message = data.error.message;
          code = data.error.code;
        }
      } catch (ignored) {
        /* not JSON: keep the status text */
      }
      throw new QueryError(message, code, response.status);
    }
    return response;
  }

  async function query(q) {
    const body = Object.assign({ source: state().source || config.source }, q);
    return (await post("/api/v1/query", body)).json();
  }

  async function download(q, format, url) {
    const body = Object.assign({ source: state().source || config.source }, q);
    const target = url || "/api/v1/export";
    const response = await post(target + (target.includes("?") ? "&" : "?") + "format=" + encodeURIComponent(format), body);
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "masar-" + (q.kind || "table") + "." + format;
    document.body.appendChild(link);
    link.click();
    setTimeout(() => {
      URL.revokeObjectURL(link.href);
      link.remove();
    }, 0);
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new QueryError(response.statusText, "http_" + response.status, response.status);
    return response.json();
  }

  // -- state in the URL ---------------------------------------------------------------------------
  function state() {
    const out = {};
    for (const [key, value] of new URLSearchParams(location.search)) out[key] = value;
    return out;
  }

  function setState(changes, replace) {
    const params = new URLSearchParams(location.search);
    for (const [key, value] of Object.entries(changes)) {
      if (value === null || value === undefined || value === "") params.delete(key);
      else params.set(key, typeof value === "object" ? JSON.stringify(value) : String(value));
    }
    const url = location.pathname + (params.toString() ? "?" + params : "");
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    document.dispatchEvent(new CustomEvent("masar:state", { detail: state() }));
  }
  window.addEventListener("popstate", () =>
    document.dispatchEvent(new CustomEvent("masar:state", { detail: state() })),
  );

  // -- formatting ---------------------------------------------------------------------------------
  const intl = config.intl || "en";
  const minor = { KWD: 3, BHD: 3, OMR: 3, JOD: 3, TND: 3, LYD: 3, IQD: 3, JPY: 0, KRW: 0 };
  const fmt = {
    number(value, places) {
      if (value === null || value === undefined) return "–";
      const opts = places === undefined ? { maximumFractionDigits: 2 } : { minimumFractionDigits: places, maximumFractionDigits: places };
      return new Intl.NumberFormat(intl, opts).format(Number(value));
    },
    money(value, currency) {
      if (value === null || value === undefined) return "–";
      const cur = currency || config.currency || "USD";
      const places = cur in minor ? minor[cur] : 2;
      return new Intl.NumberFormat(intl, {
        style: "currency", currency: cur, minimumFractionDigits: places, maximumFractionDigits: places,
      }).format(Number(value));
    },
    compactMoney(value, currency) {
      if (value === null || value === undefined) return "–";
      return new Intl.NumberFormat(intl, {
        style: "currency", currency: currency || config.currency || "USD", notation: "compact", maximumFractionDigits: 1,
      }).format(Number(value));
    },
    percent(value, places) {
      if (value === null || value === undefined) return "–";
      return new Intl.NumberFormat(intl, { style: "percent", maximumFractionDigits: places === undefined ? 1 : places }).format(Number(value));
    },
    change(value) {
      if (value === null || value === undefined) return "–";
      return new Intl.NumberFormat(intl, { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" }).format(Number(value));
    },
    date(iso) {
      if (!iso) return "–";
      const [y, m, d] = iso.split("-").map(Number);
      return new Intl.DateTimeFormat(intl, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" })
        .format(new Date(Date.UTC(y, m - 1, d || 1)));
    },
    month(iso) {
      const [y, m] = iso.split("-").map(Number);
      return new Intl.DateTimeFormat(intl, { year: "numeric", month: "short", timeZone: "UTC" }).format(new Date(Date.UTC(y, m - 1, 1)));
    },
    value(value, unit, currency) {
      if (unit === "money") return fmt.money(value, currency);
      if (unit === "rate") return fmt.percent(value);
      if (unit === "ratio") return value === null || value === undefined ? "–" : fmt.number(value, 2) + "×";
      if (unit === "days") return value === null || value === undefined ? "–" : t("%(n)s days", { n: fmt.number(value, 1) });
      return fmt.number(value);
    },
  };

  // -- charts -------------------------------------------------------------------------------------
  const palette = ["#1f6feb", "#d97706", "#059669", "#b91c1c", "#7c3aed", "#0e7490", "#a16207", "#be185d"];

  /* Right-to-left pages mirror cartesian charts: the category axis runs from the right, the value
   * axis sits on the right, legends and titles align right. */
  function mirror(option) {
    if (!rtl) return option;
    const flip = (axis, key) => {
      if (!axis) return axis;
      const list = Array.isArray(axis) ? axis : [axis];
      list.forEach((a) => {
        if (key === "x") a.inverse = !a.inverse;
        else a.position = a.position === "right" ? "left" : "right";
      });
      return axis;
    };
    const hasCartesian = option.xAxis || option.yAxis;
    if (hasCartesian) {
      flip(option.xAxis, "x");
      flip(option.yAxis, "y");
    }
    if (option.legend) {
      const legends = Array.isArray(option.legend) ? option.legend : [option.legend];
      legends.forEach((l) => {
        l.right = l.right === undefined ? 0 : l.right;
        delete l.left;
        l.align = "right";
      });
    }
    if (option.title && !Array.isArray(option.title)) {
      option.title.right = 0;
      delete option.title.left;
    }
    return option;
  }

  /* ECharts (1 MB) loads beside the page's first queries, not before them. */
  let echartsReady = null;
  function loadCharts() {
    if (!echartsReady) {
      echartsReady = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "/static/vendor/echarts.min.js?v=" + (config.version || "");
        script.onload = () => resolve(window.echarts);
        script.onerror = () => reject(new Error(t("The charts could not be loaded.")));
        document.head.appendChild(script);
      });
    }
    return echartsReady;
  }
  const pending = new Set();

  /* Draws when the library is there; returns a promise of the chart. ``drawn()`` waits for all. */
  function chart(el, option) {
    const done = loadCharts().then(() => draw(el, option));
    pending.add(done);
    done.finally(() => pending.delete(done));
    return done;
  }

  function drawn() {
    return Promise.allSettled([...pending]);
  }

  function draw(el, option) {
    let instance = window.echarts.getInstanceByDom(el);
    if (!instance) {
      instance = window.echarts.init(el, null, { renderer: "svg" });
      new ResizeObserver(() => instance.resize()).observe(el);
    }
    const full = Object.assign({ color: palette, textStyle: { fontFamily: "inherit" }, aria: { enabled: true } }, option);
    instance.setOption(mirror(full), true);
    el.setAttribute("role", "img");
    if (option.ariaLabel) el.setAttribute("aria-label", option.ariaLabel);
    return instance;
  }

  // -- tables -------------------------------------------------------------------------------------
  /* columns: [{key, label, unit?, currency?, format?(value,row)}]; rows: objects. */
  function table(el, columns, rows, opts) {
    const options = opts || {};
    const tableEl = document.createElement("table");
    tableEl.className = "data";
    if (options.caption) {
      const caption = tableEl.createCaption();
      caption.textContent = options.caption;
    }
    const head = tableEl.createTHead().insertRow();
    columns.forEach((c) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = c.label;
      if (c.unit) th.className = "num";
      head.appendChild(th);
    });
    const body = tableEl.createTBody();
    rows.forEach((row) => {
      const tr = body.insertRow();
      columns.forEach((c, i) => {
        const cell = i === 0 ? document.createElement("th") : document.createElement("td");
        if (i === 0) cell.scope = "row";
        const value = row[c.key];
        if (c.format) {
          const shown = c.format(value, row);
          if (shown instanceof Node) cell.appendChild(shown);
          else cell.textContent = shown;
        } else if (c.unit) {
          cell.textContent = fmt.value(value, c.unit, c.currency);
        } else {
          cell.textContent = value === null || value === undefined ? "–" : String(value);
        }
        if (c.unit) cell.className = "num";
        tr.appendChild(cell);
      });
    });
    el.replaceChildren(tableEl);
    return tableEl;
  }

  // -- progress and errors ------------------------------------------------------------------------
  async function busy(el, promise) {
    el.setAttribute("aria-busy", "true");
    el.classList.add("loading");
    const started = performance.now();
    const note = document.createElement("p");
    note.className = "progress";
    note.setAttribute("role", "status");
    note.textContent = t("Computing…");
    const timer = setInterval(() => {
      const seconds = Math.round((performance.now() - started) / 1000);
      note.textContent = t("Computing… %(s)s s", { s: fmt.number(seconds, 0) });
    }, 1000);
    if (!el.querySelector(".progress")) el.prepend(note);
    try {
      return await promise;
    } catch (error) {
      const box = document.createElement("p");
      box.className = "error";
      box.setAttribute("role", "alert");
      box.textContent = error.message || String(error);
      el.replaceChildren(box);
      throw error;
    } finally {
      clearInterval(timer);
      note.remove();
      el.removeAttribute("aria-busy");
      el.classList.remove("loading");
    }
  }

  /* An "Export" menu: CSV and Excel of the query that filled a chart or table (url: another
   * export endpoint than /api/v1/export, e.g. one of a result's other tables). */
  function exportButtons(el, queryFn, url) {
    const wrap = document.createElement("div");
    wrap.className = "exports";
    [["csv", t("CSV")], ["xlsx", t("Excel")]].forEach(([format, label]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.dataset.export = format;
      button.textContent = t("Export %(format)s", { format: label });
      button.addEventListener("click", () => download(queryFn(), format, url).catch((e) => alert(e.message)));
      wrap.appendChild(button);
    });
    el.appendChild(wrap);
    return wrap;
  }

  // When a page marks its data as arrived (body[data-loaded]), note the time since navigation
  // start: bench/dashboard.py reads it.
  new MutationObserver(() => {
    if (document.body && document.body.dataset.loaded && !window.__masarLoadedAt) {
      window.__masarLoadedAt = performance.now();
    }
  }).observe(document.documentElement, { attributes: true, subtree: true, attributeFilter: ["data-loaded"] });

  // The store picker keeps the page and the rest of its state.
  document.addEventListener("DOMContentLoaded", () => {
    const picker = document.getElementById("source-select");
    if (picker) {
      picker.addEventListener("change", () => {
        const params = new URLSearchParams(location.search);
        params.set("source", picker.value);
        location.search = params.toString();
      });
    }
    document.querySelectorAll("a[data-lang]").forEach((a) => {
      const params = new URLSearchParams(location.search);
      params.set("lang", a.dataset.lang);
      a.href = location.pathname + "?" + params;
    });
  });

  loadCharts();
  window.masar = { t, query, download, getJson, state, setState, fmt, chart, drawn, table, busy, exportButtons, config, rtl, QueryError, palette };
})();
