/* Settings: copy buttons for the install instructions and a new key, a confirmation before
 * revoking a key or removing a user or target, and each month's attainment from the targets
 * query. The forms themselves work without this script. */
(function () {
  "use strict";
  const { t, query, fmt } = window.masar;

  // A form's answer is shown at the form's address (/settings/keys): put the page's own address
  // back, without the one-time done=… notice, before the header's links are made from it.
  const address = new URLSearchParams(location.search);
  address.delete("done");
  history.replaceState(null, "", "/settings" + (address.toString() ? "?" + address : "") + location.hash);

  async function copy(button) {
    const block = document.getElementById(button.dataset.copy);
    const text = block.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (ignored) {
      // No clipboard API (a page served over plain http on another host): copy the selection.
      const range = document.createRange();
      range.selectNodeContents(block);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    const label = button.firstChild;
    const original = label.textContent;
    label.textContent = t("Copied");
    document.getElementById("copy-status").textContent = t("Copied to the clipboard.");
    setTimeout(() => {
      label.textContent = original;
    }, 2000);
  }

  function attained(measure, unit) {
    if (!measure) return "–";
    if (measure.attainment === null || measure.attainment === undefined) return t("not started");
    return t("%(percent)s, %(actual)s to date", {
      percent: fmt.percent(measure.attainment),
      actual: unit === "money" ? fmt.money(measure.actual) : fmt.number(measure.actual),
    });
  }

  async function loadAttainment() {
    const rows = document.querySelectorAll("#targets-table tbody tr[data-month]");
    if (!rows.length) return;
    let result;
    try {
      result = await query({ kind: "targets" });
    } catch (error) {
      rows.forEach((row) => row.querySelectorAll("[data-attainment]").forEach((cell) => { cell.textContent = "–"; }));
      const note = document.createElement("p");
      note.className = "error";
      note.setAttribute("role", "alert");
      note.textContent = error.message;
      document.getElementById("targets-table").after(note);
      return;
    }
    const byMonth = new Map((result.months || []).map((m) => [m.month, m]));
    rows.forEach((row) => {
      const month = byMonth.get(row.dataset.month) || {};
      row.querySelector('[data-attainment="revenue"]').textContent = attained(month.revenue, "money");
      row.querySelector('[data-attainment="orders"]').textContent = attained(month.orders, "count");
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    document.querySelectorAll("button[data-copy]").forEach((button) => {
      button.addEventListener("click", () => copy(button));
    });
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    await loadAttainment();
    document.body.dataset.loaded = "settings";
  });
})();
