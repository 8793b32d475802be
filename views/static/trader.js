// The trader's page: each of the caller's funded accounts, live through its risk stream.
"use strict";

const { api, stream, boot, el, when, newKey } = FF;

const RULE_NAMES = {
  drawdown: "Drawdown from peak",
  risk_per_trade: "Risk per trade",
  max_loss: "Max loss",
  daily_loss: "Daily loss",
};

function figure(label, value, key) {
  return el("div", { class: "figure", "data-figure": key }, el("span", {}, label), el("b", {}, value));
}

function usedShare(reading) {
  // value / threshold: the share of the allowance used (display only).
  if (reading.value === null) return 1;
  const used = Number(reading.value) / Number(reading.threshold);
  return Math.max(0, Math.min(1, used));
}

function gauge(rule, reading) {
  const pct = Math.round(usedShare(reading) * 100);
  const detail = reading.floor === null
    ? `${reading.remaining} of exposure left before the breach`
    : `${reading.remaining} left before the breach · floor ${reading.floor}`;
  return el(
    "div",
    { class: `gauge ${reading.status}`, "data-rule": rule, "data-status": reading.status,
      "data-used": String(pct) },
    el("div", { class: "name" }, el("span", {}, RULE_NAMES[rule] || rule),
      el("span", { class: "status" }, `${reading.status} · ${pct} % used`)),
    el("div", { class: "bar" }, Object.assign(el("div", { class: "fill" }), {})),
    el("div", { class: "detail" }, detail),
  );
}

function countdown(to) {
  const ms = new Date(to).getTime() - Date.now();
  if (ms <= 0) return "now";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return `${h}h ${String(m).padStart(2, "0")}m ${String(r).padStart(2, "0")}s`;
}

class AccountCard {
  constructor(account) {
    this.id = account.id;
    this.node = document.getElementById("account-card").content.firstElementChild.cloneNode(true);
    this.node.dataset.account = this.id;
    this.node.querySelector(".acct-title").textContent = `${account.tier_id} · ${account.id}`;
    this.version = -1;
    this.day = null;
    this.refreshTimer = null;
    this.node.querySelector("form.withdraw").addEventListener("submit", (ev) => this.withdraw(ev));
    setInterval(() => this.tick(), 1000);
  }

  render(view) {
    if (view.version < this.version) return;
    this.version = view.version;
    this.node.dataset.version = String(view.version);
    const status = this.node.querySelector(".acct-status");
    const locked = view.trading_day && view.trading_day.locked_until;
    status.textContent = locked ? "locked" : view.status;
    status.className = `acct-status badge ${locked ? "locked" : view.status}`;
    if (view.closure_reason) status.textContent += ` (${view.closure_reason})`;
    const figures = this.node.querySelector(".figures");
    figures.replaceChildren(
      figure("Equity", view.equity, "equity"),
      figure("Balance", view.balance, "balance"),
      figure("Peak", view.peak_balance, "peak_balance"),
      figure("Realized P&L", view.realized_pnl, "realized_pnl"),
      figure("Unrealized P&L", view.unrealized_pnl, "unrealized_pnl"),
      figure("Withdrawable", view.withdrawable_amount, "withdrawable_amount"),
    );
    const gauges = this.node.querySelector(".gauges");
    gauges.replaceChildren(...Object.entries(view.rules).map(([rule, r]) => gauge(rule, r)));
    for (const g of gauges.querySelectorAll(".gauge")) {
      g.querySelector(".fill").style.width = g.dataset.used + "%";
    }
    const rows = view.positions.map((p) => el("tr", { "data-position": p.position_id },
      el("td", {}, p.position_id), el("td", {}, p.symbol), el("td", {}, p.side),
      el("td", {}, p.notional), el("td", {}, p.unrealized_pnl)));
    this.node.querySelector("table.positions tbody").replaceChildren(...rows);
    this.day = view.trading_day;
    this.tick();
    this.soon();
  }

  tick() {
    const box = this.node.querySelector(".day");
    if (!this.day) { box.textContent = ""; delete box.dataset.locked; return; }
    const d = this.day;
    let text = `Trading day ${d.day} · P&L today ${d.day_pnl} · resets in ${countdown(d.resets_at)}`;
    if (d.locked_until) text += ` · new positions locked until ${when(d.locked_until)}`;
    box.textContent = text;
    box.dataset.locked = String(Boolean(d.locked_until));
  }

  setFeed(state) {
    const badge = this.node.querySelector(".feed");
    badge.textContent = state;
    badge.className = `feed badge ${state === "live" ? "live" : "down"}`;
    badge.dataset.state = state;
  }

  soon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => { this.eligibility(); this.withdrawals(); }, 200);
  }

  async eligibility() {
    const { status, data } = await api("GET", `/funded-accounts/${this.id}/payout-eligibility`);
    const box = this.node.querySelector(".eligibility");
    if (status !== 200) { box.textContent = "payout check unavailable"; return; }
    const head = el("p", { "data-eligible": String(data.eligible) }, data.eligible
      ? `A withdrawal of up to ${data.max_amount} can be requested now.`
      : "A withdrawal cannot be requested yet:");
    const list = el("ul", { class: "gates" }, ...data.gates.map((g) =>
      el("li", { class: g.passed ? "passed" : "failed", "data-gate": g.gate },
        `${g.gate}: ${g.message}`)));
    box.replaceChildren(head, list);
  }

  async withdrawals() {
    const { status, data } = await api("GET", `/funded-accounts/${this.id}/withdrawals`);
    if (status !== 200) return;
    const rows = data.withdrawals.map((w) => el("tr", { "data-withdrawal": w.id, "data-status": w.status },
      el("td", {}, when(w.requested_at)), el("td", {}, w.amount), el("td", { class: "status" }, w.status),
      el("td", {}, w.rejection_reason || w.stripe_payout_id || (w.requires_review ? "awaiting review" : ""))));
    this.node.querySelector("table.withdrawals tbody").replaceChildren(...rows);
  }

  async withdraw(ev) {
    ev.preventDefault();
    const form = ev.target;
    const out = form.querySelector(".result");
    const button = form.querySelector("button");
    button.disabled = true;
    out.textContent = "sending…";
    out.className = "result";
    try {
      // One key per submission: a retry of this submission can never pay twice.
      const { status, data } = await api("POST", `/funded-accounts/${this.id}/withdraw`, {
        amount: form.amount.value.trim(),
        payment_method: "stripe_connect",
        destination: form.destination.value.trim(),
      }, { "Idempotency-Key": newKey() });
      if (status === 201) {
        const w = data.withdrawal;
        out.textContent = `Withdrawal ${w.amount}: ${w.status}`;
        out.className = "result ok";
        out.dataset.status = w.status;
      } else {
        const e = (data && data.error) || { code: String(status), message: "" };
        out.textContent = `Refused: ${e.code} — ${e.message}`;
        out.className = "result refused";
        out.dataset.status = e.code;
      }
    } finally {
      button.disabled = false;
      this.withdrawals();
      this.eligibility();
    }
  }

  follow() {
    stream(`/funded-accounts/${this.id}/risk/stream`, (type, data) => {
      if (type === "risk") this.render(data);
      else if (type === "feed" && data.redis) this.setFeed(data.redis === "up" ? "live" : "polling");
    }, (state) => this.setFeed(state));
  }
}

boot(async () => {
  const box = document.getElementById("accounts");
  const cards = new Map();
  async function refresh() {
    const { status, data } = await api("GET", "/funded-accounts");
    if (status !== 200) {
      if (!cards.size) box.textContent = `Could not list your accounts (${status}).`;
      return;
    }
    if (!data.funded_accounts.length) {
      box.textContent = "You have no funded account yet (this page adds it when it appears).";
      return;
    }
    if (!cards.size) box.textContent = "";
    // Newest first, as the API lists them; a new account appears at the top.
    for (const account of [...data.funded_accounts].reverse()) {
      if (cards.has(account.id)) continue;
      const card = new AccountCard(account);
      cards.set(account.id, card);
      box.prepend(card.node);
      card.follow();
    }
  }
  await refresh();
  setInterval(refresh, 3000);
});
