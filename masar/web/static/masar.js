/* masar.js: Masar's storefront snippet (docs/snippet.md). No dependencies.
 * Segment-compatible messages, batched to POST {host}/v1/batch as text/plain with the write key
 * in the body: a "simple" cross-origin request, so the browser sends no CORS preflight. */
(function (w, d) {
  "use strict";
  var VERSION = "1.0.0";
  var AID = "masar_aid", UID = "masar_uid", CONSENT = "masar_consent";
  var UTM = { utm_source: "source", utm_medium: "medium", utm_campaign: "name", utm_term: "term", utm_content: "content" };
  var BEACON_BYTES = 60000; // browsers refuse beacons over 64 KB
  var el = d.currentScript || d.querySelector("script[data-write-key]");
  var cfg = w.masarConfig || {};
  var opt = function (key, attr) {
    return cfg[key] !== undefined ? String(cfg[key]) : el && el.getAttribute("data-" + attr);
  };
  var writeKey = opt("writeKey", "write-key");
  var host = (opt("host", "host") || (el && el.src ? new URL(el.src, location.href).origin : location.origin)).replace(/\/+$/, "");
  var every = Number(opt("flushInterval", "flush-interval")) || 3000;
  var cookieDomain = opt("cookieDomain", "cookie-domain");
  var queue = [], timer = null, delay = every, pageSent = false;

  function stored(key, value) {
    try {
      if (value === undefined) return localStorage.getItem(key);
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch (ignored) { /* storage blocked: ids last for this page only */ }
    return null;
  }
  var decided = stored(CONSENT);
  var granted = decided ? decided === "granted" : ["pending", "false"].indexOf(opt("consent", "consent")) < 0;
  var userId = granted ? stored(UID) : null;

  function uuid() { // RFC 4122 version 4 (crypto.randomUUID exists on https pages only)
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  function cookie(value, maxAge) {
    d.cookie = AID + "=" + value + "; Max-Age=" + maxAge + "; Path=/; SameSite=Lax" +
      (cookieDomain ? "; Domain=" + cookieDomain : "") + (location.protocol === "https:" ? "; Secure" : "");
  }
  function anonymousId() {
    var found = d.cookie.match(/(?:^|;\s*)masar_aid=([^;]+)/);
    var id = found ? decodeURIComponent(found[1]) : uuid();
    cookie(encodeURIComponent(id), 31536000); // one year from the last visit
    return id;
  }

  function context() {
    var params = new URLSearchParams(location.search), campaign = {}, some = false;
    for (var key in UTM) {
      if (params.get(key)) {
        campaign[UTM[key]] = params.get(key);
        some = true;
      }
    }
    // Click ids (gclid, fbclid, ttclid, msclkid, ScCid, ...) stay in page.url: Masar reads them there.
    var out = {
      page: { path: location.pathname, referrer: d.referrer, search: location.search, title: d.title, url: location.href },
      userAgent: navigator.userAgent,
      locale: navigator.language,
      library: { name: "masar.js", version: VERSION },
    };
    try { out.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (ignored) { /* old browser */ }
    if (some) out.campaign = campaign;
    return out;
  }

  function enqueue(type, fields) {
    if (stored(CONSENT) === "denied") granted = false; // refused in another tab
    if (!granted || !writeKey) return;
    var m = { type: type, messageId: uuid(), timestamp: new Date().toISOString(), anonymousId: anonymousId(), context: context() };
    if (userId) m.userId = userId;
    for (var key in fields) m[key] = fields[key];
    queue.push(m);
    if (queue.length > 1000) queue.shift(); // a long outage: keep the newest
    if (queue.length >= 20) flush();
    else if (!timer) timer = setTimeout(flush, delay);
  }

  function body(items) {
    return JSON.stringify({ batch: items, writeKey: writeKey, sentAt: new Date().toISOString() });
  }
  // Batches of at most `limit` bytes. A message the server would refuse (over 32 KB) or that
  // cannot be written as JSON (a circular property) is dropped, as Segment's clients do.
  function chunks(items, limit) {
    var out = [], part = [], size = 0;
    items.forEach(function (m) {
      var n;
      try { n = new Blob([JSON.stringify(m)]).size + 1; } catch (ignored) { return; }
      if (n > 32000) return;
      if (size + n > limit && part.length) {
        out.push(part);
        part = [];
        size = 0;
      }
      part.push(m);
      size += n;
    });
    if (part.length) out.push(part);
    return out;
  }

  function flush() {
    clearTimeout(timer);
    timer = null;
    var items = queue.splice(0, queue.length);
    return Promise.all(chunks(items, BEACON_BYTES).map(function (part) {
      // keepalive: the request outlives the page; a string body goes as text/plain (no preflight).
      return fetch(host + "/v1/batch", { method: "POST", body: body(part), keepalive: true, credentials: "omit" })
        .then(function (response) {
          if (response.status === 429 || response.status >= 500) throw new Error("retry");
          delay = every; // sent, or refused for good (bad key, invalid messages): never resent
        })
        .catch(function () {
          if (granted) queue = part.concat(queue);
          delay = Math.min(delay * 2, 60000);
          if (!timer && queue.length) timer = setTimeout(flush, delay);
        });
    }));
  }

  // The page is going away (tab hidden, navigation, close): hand what is queued to the browser.
  function beacon() {
    if (!queue.length || !navigator.sendBeacon) return;
    var items = queue.splice(0, queue.length);
    chunks(items, BEACON_BYTES).forEach(function (part) {
      if (!navigator.sendBeacon(host + "/v1/batch", body(part))) queue = queue.concat(part);
    });
  }
  d.addEventListener("visibilitychange", function () {
    if (d.visibilityState === "hidden") beacon();
  });
  w.addEventListener("pagehide", beacon);

  var api = {
    page: function (name, properties) {
      if (typeof name === "object" && name) {
        properties = name;
        name = undefined;
      }
      var page = context().page, props = {};
      for (var key in page) props[key] = page[key];
      for (key in properties || {}) props[key] = properties[key];
      pageSent = pageSent || granted;
      enqueue("page", name ? { name: String(name), properties: props } : { properties: props });
    },
    track: function (event, properties) {
      if (typeof event === "string" && event) enqueue("track", { event: event, properties: properties || {} });
    },
    identify: function (id, traits) {
      if (typeof id === "object" && id) {
        traits = id;
        id = null;
      }
      if (id !== null && id !== undefined && granted) {
        userId = String(id);
        stored(UID, userId);
      }
      enqueue("identify", { traits: traits || {} });
    },
    // Signed out: forget the user id and start a new anonymous visitor.
    reset: function () {
      userId = null;
      stored(UID, null);
      cookie("", 0);
    },
    // consent(false): stop, drop what is queued, clear the cookie and the stored ids; remembered.
    consent: function (yes) {
      granted = !!yes;
      stored(CONSENT, granted ? "granted" : "denied");
      if (!granted) {
        queue = [];
        api.reset();
      } else if (!pageSent && opt("autoPage", "auto-page") !== "false") {
        api.page();
      }
    },
    flush: flush,
    version: VERSION,
  };

  var early = w.masar; // calls made before this script loaded: window.masar = [["track", "X"], ...]
  w.masar = api;
  if (granted && opt("autoPage", "auto-page") !== "false") api.page();
  if (Array.isArray(early)) {
    early.forEach(function (call) {
      if (api[call[0]]) api[call[0]].apply(null, call.slice(1));
    });
  }
})(window, document);
