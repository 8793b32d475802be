// The admin's page: withdrawals waiting for review, oldest first, decided from here.
"use strict";

const { api, boot, el, when, newKey } = FF;

async function breaches(accountId, list) {
  const { status, data } = await api("GET", `/funded-accounts/${accountId}/breaches`);
  if (status !== 200) { list.replaceChildren(el("li", {}, "unavailable")); return; }
  if (!data.breaches.length) { list.replaceChildren(el("li", {}, "no breach")); return; }
  list.replaceChildren(...data.breaches.map((b) => el("li", { "data-rule": b.rule },
    `${when(b.occurred_at)} · ${b.rule} (${b.action || "close"}) · `
    + (b.evidence ? b.evidence.formula : `value ${b.value} over ${b.threshold}`))));
}

function card(w) {
  const node = document.getElementById("pending-card").content.firstElementChild.cloneNode(true);
  node.dataset.withdrawal = w.id;
  node.querySelector(".title").textContent = `${w.user_id} · requested ${when(w.requested_at)}`;
  node.querySelector(".amount").textContent = w.amount;
  const a = w.account;
  node.querySelector(".summary").textContent =
    `Account ${a.id} (${a.status}) · equity ${a.current_balance} · realized ${a.realized_pnl}`
    + ` · paid so far ${a.total_withdrawals} · withdrawable ${a.withdrawable_amount}`;
  const details = node.querySelector(".breaches");
  details.addEventListener("toggle", () => {
    if (details.open) breaches(a.id, details.querySelector("ul"));
  }, { once: true });
  const out = node.querySelector(".result");
  async function decide(path, body) {
    for (const b of node.querySelectorAll("button")) b.disabled = true;
    out.textContent = "sending…";
    const { status, data } = await api("POST", path, body, { "Idempotency-Key": newKey() });
    if (status === 200) {
      out.textContent = `${data.withdrawal.status}` +
        (data.withdrawal.stripe_payout_id ? ` — transfer ${data.withdrawal.stripe_payout_id}` : "");
      out.className = "result ok";
      out.dataset.status = data.withdrawal.status;
    } else {
      const e = (data && data.error) || { code: String(status), message: "" };
      out.textContent = `${e.code} — ${e.message}`;
      out.className = "result refused";
      out.dataset.status = e.code;
      for (const b of node.querySelectorAll("button")) b.disabled = false;
    }
  }
  node.querySelector(".approve").addEventListener("click",
    () => decide(`/admin/withdrawals/${w.id}/approve`));
  node.querySelector("form.reject").addEventListener("submit", (ev) => {
    ev.preventDefault();
    decide(`/admin/withdrawals/${w.id}/reject`, { reason: ev.target.reason.value.trim() });
  });
  return node;
}

async function load() {
  const box = document.getElementById("queue");
  const { status, data } = await api("GET", "/admin/withdrawals/pending");
  if (status === 403) { box.textContent = "This token has no admin role."; return; }
  if (status !== 200) { box.textContent = `The queue is unavailable (${status}).`; return; }
  const shown = new Set([...box.querySelectorAll("article")].map((n) => n.dataset.withdrawal));
  if (!data.withdrawals.length && !shown.size) { box.textContent = "Nothing to review."; return; }
  if (!shown.size) box.textContent = "";
  for (const w of data.withdrawals) {
    if (!shown.has(w.id)) box.append(card(w));
  }
}

boot(() => {
  const refresh = document.getElementById("refresh");
  refresh.hidden = false;
  refresh.addEventListener("click", load);
  load();
  setInterval(load, 5000);
});
