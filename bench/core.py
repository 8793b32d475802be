"""What one trade event costs in the account agent's own code, without Kafka or Faust's loop.

Replays the work of `agents.accounts.AccountProcessor.process` step by step on a realistic
stored value (an activated account with a few positions behind it): Faust's JSON decoding of
the table value, `tables.accounts.load` (AccountState.from_dict), the parse of the event,
`domain.account.handle`, `tables.accounts.dump` (to_dict) and Faust's JSON encoding of the new
value, and the snapshot and facts sent per event. The per-step microseconds show how much of a
worker's per-event budget (200 us at 5,000 events/s) the pure Python part takes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from faust.serializers import codecs

from app.codec import dumps, loads_object
from bench.load import LONG_HISTORY_BAND_CENTS, TradeMix, make_accounts
from domain.account import DictMemory, handle, step
from domain.events import ActivateAccount, parse_trade
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.tiers import default_catalog
from tables.accounts import OUTBOX_LIMIT, dump, load

# The applied-ids memory and the withdrawal archive, which the worker keeps in tables beside
# the value (their RocksDB look-up is not in these figures: bench/ throughput has it).
MEMORY = DictMemory()


def _activated(account_id: str, user_id: str, assessment_id: str) -> dict[str, Any]:
    tier = next(t for t in default_catalog() if t.tier_id == "funded-100k")
    cmd = ActivateAccount(
        event_id=f"activate:{assessment_id}",
        account_id=account_id,
        user_id=user_id,
        assessment_id=assessment_id,
        tier=tier,
        activated_at=datetime.now(UTC),
    )
    outcome = handle(None, cmd)
    assert outcome.state is not None
    return dump(outcome.state, [[cmd.event_id, "commands:0:0", outcome.facts]])


def _apply(value: dict[str, Any], raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state, outbox = load(value)
    item = parse_trade(loads_object(raw))
    outcome = step(state, item, MEMORY)
    MEMORY.record(item, outcome)
    assert outcome.state is not None and outcome.changed, outcome
    if outcome.facts:
        outbox.append([item.event_id, "trades:0:0", outcome.facts])
    return dump(outcome.state, outbox[-OUTBOX_LIMIT:]), outcome.facts


def measure_one(events: int, history: int, accounts_n: int) -> dict[str, Any]:
    """Microseconds per trade event for each step, on accounts with `history` trade events
    applied before the measured ones."""
    # Each measurement its own run: event ids are "t-<run>-<n>", and the memory is shared.
    run = f"core{history}x{accounts_n}"
    accounts = make_accounts(run, "core", 0, accounts_n)
    mix = TradeMix(accounts, run=run, seed=3, pnl_band_cents=LONG_HISTORY_BAND_CENTS)
    codec = codecs.get_codec("json")
    values: dict[str, bytes] = {}
    for a in accounts:
        values[a.account_id] = codec.dumps(_activated(a.account_id, a.user_id, a.assessment_id))
    for _ in range(history * len(accounts)):
        acct, event = mix.next()
        new, _ = _apply(codec.loads(values[acct]), dumps(event))
        values[acct] = codec.dumps(new)
    work = [(acct, dumps(event)) for acct, event in (mix.next() for _ in range(events))]

    names = (
        "faust_json_decode_value",
        "state_from_dict",
        "parse_event",
        "handle_rules",
        "state_to_dict",
        "faust_json_encode_value",
        "snapshot_and_facts_json",
    )
    steps = dict.fromkeys(names, 0.0)
    value_bytes = 0
    clock = time.perf_counter
    for acct, raw in work:
        stored = values[acct]
        value_bytes += len(stored)
        t0 = clock()
        value = codec.loads(stored)
        t1 = clock()
        state, outbox = load(value)
        t2 = clock()
        item = parse_trade(loads_object(raw))
        t3 = clock()
        outcome = step(state, item, MEMORY)
        t4 = clock()
        MEMORY.record(item, outcome)
        assert outcome.state is not None
        if outcome.facts:
            outbox.append([item.event_id, "trades:0:0", outcome.facts])
        new = dump(outcome.state, outbox[-OUTBOX_LIMIT:])
        t5 = clock()
        encoded = codec.dumps(new)
        t6 = clock()
        for fact in outcome.facts:
            dumps(fact)
        dumps(snapshot(outcome.state, withdrawal_ids_in(outcome.facts)))
        t7 = clock()
        marks = (t0, t1, t2, t3, t4, t5, t6, t7)
        for i, name in enumerate(names):
            steps[name] += marks[i + 1] - marks[i]
        values[acct] = encoded
    total = sum(steps.values())
    per_event = {k: round(v / events * 1e6, 1) for k, v in steps.items()}
    return {
        "events": events,
        "history_events_per_account": history,
        "us_per_event": per_event,
        "us_per_event_total": round(total / events * 1e6, 1),
        "events_per_second_core_only": round(events / total) if total else None,
        "stored_value_bytes_avg": round(value_bytes / events),
    }


def measure_batched(events: int, per_batch: int, accounts_n: int = 5) -> dict[str, Any]:
    """Microseconds per trade event on the batched agent's path (agents/accounts.py
    `process_batch`), `per_batch` inputs of an account at a time: the value decoded and loaded
    once, each input parsed and applied, the value dumped and encoded and the snapshot made
    once; the facts encoded as they come. `per_batch` 1 is the young mix's case (one input per
    account per batch), 64 the most an account gets between two value writes."""
    run = f"corebatch{per_batch}x{accounts_n}"
    accounts = make_accounts(run, "core", 0, accounts_n)
    mix = TradeMix(accounts, run=run, seed=5, pnl_band_cents=LONG_HISTORY_BAND_CENTS)
    codec = codecs.get_codec("json")
    values = {
        a.account_id: codec.dumps(_activated(a.account_id, a.user_id, a.assessment_id))
        for a in accounts
    }
    for _ in range(10 * len(accounts)):
        acct, event = mix.next()
        new, _ = _apply(codec.loads(values[acct]), dumps(event))
        values[acct] = codec.dumps(new)
    # Each account's inputs in runs of `per_batch`, as a batch groups them.
    per_account: dict[str, list[bytes]] = {a.account_id: [] for a in accounts}
    while sum(len(v) for v in per_account.values()) < events:
        acct, event = mix.next()
        per_account[acct].append(dumps(event))
    clock = time.perf_counter
    load_s = apply_s = store_s = 0.0
    applied = 0
    for acct, raws in per_account.items():
        for start in range(0, len(raws), per_batch):
            chunk = raws[start : start + per_batch]
            t0 = clock()
            state, outbox = load(codec.loads(values[acct]))
            t1 = clock()
            facts: list[dict[str, Any]] = []
            for raw in chunk:
                item = parse_trade(loads_object(raw))
                outcome = step(state, item, MEMORY)
                MEMORY.record(item, outcome)
                assert outcome.state is not None
                state = outcome.state
                if outcome.facts:
                    outbox.append([item.event_id, "trades:0:0", outcome.facts])
                for fact in outcome.facts:
                    dumps(fact)
                facts.extend(outcome.facts)
            t2 = clock()
            assert state is not None
            values[acct] = codec.dumps(dump(state, outbox[-OUTBOX_LIMIT:]))
            dumps(snapshot(state, withdrawal_ids_in(facts)))
            t3 = clock()
            load_s += t1 - t0
            apply_s += t2 - t1
            store_s += t3 - t2
            applied += len(chunk)
    total = load_s + apply_s + store_s
    return {
        "inputs_per_account_per_batch": per_batch,
        "events": applied,
        "us_per_event": {
            "load_value_once_per_batch": round(load_s / applied * 1e6, 1),
            "parse_apply_and_facts": round(apply_s / applied * 1e6, 1),
            "store_value_and_snapshot_once_per_batch": round(store_s / applied * 1e6, 1),
        },
        "us_per_event_total": round(total / applied * 1e6, 1),
    }


def measure(events: int = 5_000) -> dict[str, Any]:
    """The per-event cost on young accounts, on accounts with a long history, and on the
    batched agent's path for 1, 8 and 64 inputs of an account per batch."""
    young = measure_one(events, 10, max(1, events // 50))
    growth = {
        str(h): {
            "us_per_event_total": r["us_per_event_total"],
            "stored_value_bytes_avg": r["stored_value_bytes_avg"],
        }
        for h in (100, 1_000, 10_000, 20_000)
        for r in [measure_one(max(200, events // 5), h, 5)]
    }
    batched = {
        str(k): measure_batched(max(640, events // 2), k)["us_per_event_total"] for k in (1, 8, 64)
    }
    return {**young, "by_applied_events_before": growth, "batched_us_per_event": batched}


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
