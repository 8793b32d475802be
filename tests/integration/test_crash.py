"""A worker killed with SIGKILL in the middle of a stream, then restarted.

Forty accounts get a seeded stream of about 4,000 trade events plus withdrawal requests and
admin decisions (`tests/integration/scripted.py`). The worker is killed (SIGKILL) while it is
working through the stream and is started again on the same data directory while the rest keeps
arriving. Afterwards `scripted.verify` holds: states equal the pure replay of the same inputs,
facts are exactly the replay's by `event_id` and in order per account, dead letters are the
replay's, and every withdrawal produced at most one transfer at the recording Stripe double.

The worker runs with BROKER_SESSION_TIMEOUT=6 (Faust reads it from the environment): with the
default 60 s, the restarted worker waits that long for its dead predecessor to leave the group.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.codec import dumps
from app.settings import Settings
from app.tiers_seed import seed_tiers
from app.topics import ACCOUNT_COMMANDS, TRADES
from domain.state import AccountState
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until
from tests.integration.scripted import (
    ChangelogTail,
    Publisher,
    activate_all,
    generate,
    killable_env,
    local_applied,
    read_outcome,
    verify,
    wait_caught_up,
    write_catalog,
)
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

ACCOUNTS = 40
# Accounts pushed through a drawdown breach half-way: closure, liquidation, dead letters.
DOOMED = {3, 17, 29}
STALL_SECONDS = 20

# --- the test ------------------------------------------------------------------------------------


@asynccontextmanager
async def following(kafka: Kafka, worker: Worker) -> AsyncIterator[ChangelogTail]:
    """The accounts changelog followed for the duration of the block."""
    partitions = int(worker.env["TOPIC_PARTITIONS"])
    tail = ChangelogTail(kafka.services, f"{kafka.prefix}fundedflow-accounts-changelog", partitions)
    task = asyncio.create_task(tail.run())
    try:
        yield tail
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def setup(
    services: Services,
    double: StripeDouble,
    module_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Kafka, Worker]]:
    prefix = s.uid("crash") + "."
    tmp = tmp_path_factory.mktemp("crash")
    env = killable_env(services, prefix, double, module_schema)
    await seed_tiers(Settings.from_env(env), write_catalog(tmp / "tiers.json"))
    worker = Worker(env, tmp / "data", tmp / "worker.log").start()
    kafka = Kafka(services, prefix)
    kafka.workers.append(worker)
    await kafka.start()
    try:
        await worker.wait_ready()
        yield kafka, worker
    finally:
        await kafka.stop()
        worker.stop()


async def test_sigkill_mid_stream_then_restart(
    setup: tuple[Kafka, Worker], double: StripeDouble
) -> None:
    kafka, worker = setup
    started = time.monotonic()
    async with following(kafka, worker) as tail:
        scripts = await activate_all(kafka, tail, ACCOUNTS, "crash")
        for i, sc in enumerate(scripts):
            generate(sc, i, refusals=True, doomed=DOOMED)
        publisher = Publisher(kafka, tail, scripts)
        expected_applied = sum(sc.applied_total for sc in scripts)
        n_trades = sum(1 for sc in scripts for i in sc.inputs if i.topic == TRADES)
        n_commands = publisher.total - n_trades
        assert n_trades >= 3500 and n_commands >= 200, (n_trades, n_commands)

        publishing = asyncio.create_task(publisher.run())

        # Kill once the stream is well under way: ~40 % published and the worker busy with it.
        def mid_stream() -> bool:
            kafka.check_workers()
            return (
                publisher.published >= 0.4 * publisher.total
                and tail.total() >= 0.3 * expected_applied
            )

        await wait_until(mid_stream, timeout=60, interval=0.05, what="the stream under way")
        killed_at = (publisher.published, tail.total())
        worker.kill()
        assert killed_at[0] < publisher.total and killed_at[1] < expected_applied
        await asyncio.sleep(1.0)  # inputs keep arriving while it is down
        worker.start()
        await worker.wait_ready()
        restarted_after = time.monotonic() - started

        while not publishing.done():
            kafka.check_workers()
            if time.monotonic() - publisher.progress_at > STALL_SECONDS:
                publishing.cancel()
                stuck = publisher.stuck()
                worker.stop()  # to read its local store
                local = local_applied(worker.data_dir, set(stuck))
                raise AssertionError(
                    f"publishing stalled at {publisher.published}/{publisher.total}: accounts "
                    "whose changelog never showed what was published before a topic switch: "
                    f"{stuck}; inputs applied in the worker's local store: {local}. A local "
                    "store ahead of the changelog means writes that died with the killed worker "
                    "were never stored again: the re-read input is a duplicate, and the "
                    "duplicate branch of agents/accounts.py does not write the value again. "
                    "Local store as far behind: inputs lost before the agent (app/worker.py)."
                )
            await asyncio.sleep(0.2)
        await publishing
        await wait_caught_up(kafka, tail, scripts)
        accounts, fact_records, dlq_records = await read_outcome(kafka)

    verdict = verify(scripts, tail, accounts, fact_records, dlq_records, double, kafka.prefix)

    # The stream had something at stake on both sides of the kill.
    statuses, closed, want_dead = verdict.statuses, verdict.closed, verdict.dead_letters
    assert statuses["completed"] >= 40 and statuses["pending"] + statuses["rejected"] >= 5
    assert closed >= len(DOOMED) and want_dead
    print(
        f"\ncrash test: {publisher.total} inputs ({n_trades} trades, {n_commands} commands), "
        f"killed at {killed_at[0]} published / {killed_at[1]} applied of {expected_applied}, "
        f"worker back after {restarted_after:.1f}s; withdrawals {dict(statuses)}, "
        f"{closed} accounts closed, {len(want_dead)} trade dead letters "
        f"({len(dlq_records)} records); duplicate facts {dict(verdict.duplicates) or 0}; "
        f"stripe requests {double.requests}; changelog records {tail.records}, "
        f"went back {tail.went_back or 'never'}; publisher blocked rounds "
        f"{publisher.blocked_rounds}; total {time.monotonic() - started:.1f}s"
    )
    assert not tail.went_back, f"changelog moved an account backwards: {tail.went_back}"


LONG_ACCOUNTS = 3
# Trades each account applies before the rest of its script: past the 20,000 applied events of
# the hot-path issue's long-history accounts.
LONG_HISTORY = 20_000
LONG_REST = 120


async def test_sigkill_on_long_history_accounts_with_producer_redeliveries(
    setup: tuple[Kafka, Worker], double: StripeDouble
) -> None:
    """Accounts past 20,000 applied events, killed twice: once while the worker works through
    their history as one backlog (large batches, one value write per 64 inputs of an account),
    once in the rest of their script, where one trade in ten is a producer's redelivery of an
    earlier one, most of them thousands of inputs old. The outcome is the pure replay's."""
    kafka, worker = setup
    started = time.monotonic()
    async with following(kafka, worker) as tail:
        scripts = await activate_all(kafka, tail, LONG_ACCOUNTS, "long")
        for i, sc in enumerate(scripts):
            total = LONG_HISTORY + LONG_REST
            generate(
                sc,
                i,
                refusals=True,
                trades_per_account=(total, total),
                history=LONG_HISTORY,
                redeliveries=0.1,
            )
            assert all(inp.topic == TRADES for inp in sc.inputs[:LONG_HISTORY])
        history = [
            (TRADES, sc.account_id, sc.inputs[k].value)
            for k in range(LONG_HISTORY)
            for sc in scripts
        ]
        # Redeliveries after the history: inputs repeating an earlier input's bytes.
        old_repeats = 0
        for sc in scripts:
            early = {inp.value for inp in sc.inputs[: LONG_HISTORY - 64]}
            old_repeats += sum(1 for inp in sc.inputs[LONG_HISTORY:] if inp.value in early)
        assert old_repeats >= 10, old_repeats

        # 1. The history as one backlog, and a SIGKILL while it is being applied.
        sending = asyncio.create_task(kafka.send_many(history))

        def under_way() -> bool:
            kafka.check_workers()
            return tail.total() >= LONG_ACCOUNTS + 0.4 * len(history)

        await wait_until(under_way, timeout=240, interval=0.05, what="the history under way")
        first_kill = tail.total()
        worker.kill()
        await sending
        await asyncio.sleep(1.0)
        worker.start()
        await worker.wait_ready()

        def history_applied() -> bool:
            kafka.check_workers()
            return all(tail.applied.get(sc.account_id, 0) > LONG_HISTORY for sc in scripts)

        await wait_until(history_applied, timeout=240, interval=0.1, what="the whole history")
        history_done = time.monotonic() - started

        # 2. The rest: withdrawals, decisions, redeliveries; a SIGKILL half-way.
        publisher = Publisher(kafka, tail, scripts)
        for sc in scripts:
            publisher.next[sc.account_id] = LONG_HISTORY
        publisher.published = len(history)
        publishing = asyncio.create_task(publisher.run())
        rest = publisher.total - len(history)

        def half_way() -> bool:
            kafka.check_workers()
            return publisher.published >= len(history) + rest // 2

        await wait_until(half_way, timeout=120, interval=0.05, what="the rest under way")
        worker.kill()
        await asyncio.sleep(1.0)
        worker.start()
        await worker.wait_ready()
        await asyncio.wait_for(publishing, timeout=180)
        await wait_caught_up(kafka, tail, scripts, timeout=120)
        accounts, fact_records, dlq_records = await read_outcome(kafka)
        remembered = await kafka.read_all([], [f"{kafka.prefix}fundedflow-applied-ids-changelog"])

    verdict = verify(scripts, tail, accounts, fact_records, dlq_records, double, kafka.prefix)
    # Every applied input's id is in the applied-ids changelog, the inputs around both kills
    # included: a producer's redelivery of any of them stays a duplicate for the window.
    keys = {json.loads(key) for _, key, value, _ in remembered if key is not None and value}
    unremembered = {
        sc.account_id: [eid for eid in sc.applied_ids[1:] if f"{sc.account_id}/{eid}" not in keys]
        for sc in scripts
    }
    assert not any(unremembered.values()), {a: (len(m), m[:5]) for a, m in unremembered.items()}
    assert all(
        exp.state.version > LONG_HISTORY and exp.state.is_active
        for exp in verdict.expected.values()
    )
    assert verdict.statuses["completed"] >= 3, verdict.statuses
    print(
        f"\nlong-history crash test: {len(history)} history trades on {LONG_ACCOUNTS} accounts "
        f"(killed at {first_kill} applied), history applied after {history_done:.1f}s; "
        f"{rest} inputs after it with {old_repeats} redeliveries of old inputs; withdrawals "
        f"{dict(verdict.statuses)}; duplicate facts {dict(verdict.duplicates) or 0}; "
        f"changelog records {tail.records}; total {time.monotonic() - started:.1f}s"
    )
    assert not tail.went_back, f"changelog moved an account backwards: {tail.went_back}"


async def test_refused_request_read_again_is_not_decided_again(
    setup: tuple[Kafka, Worker],
) -> None:
    """What Kafka does after a crash, made deterministic: the very same command record is read
    a second time, after the account has changed. A decided command must stay decided."""
    kafka, _ = setup

    async def state(check: Any, what: str) -> AccountState:
        async def probe() -> AccountState | None:
            kafka.check_workers()
            value = (await kafka.accounts()).get(acct)
            st = None if value is None else AccountState.from_dict(value["state"])
            return st if st is not None and check(st) else None

        return await wait_until(probe, timeout=60, what=what)

    asm = s.uid("asm")
    acct = s.account_of(asm)
    await kafka.send("assessment.completed", asm, s.assessment(asm))
    await state(lambda st: True, "activation")
    await kafka.send_many(
        [
            (TRADES, acct, s.opened(acct, "p-1", "1000.00")),
            (TRADES, acct, s.closed(acct, "p-1", "10000.00")),
        ]
    )
    await state(lambda st: st.withdrawable_cents == 8000_00, "withdrawable 8,000.00")
    big, small, sync = s.uid("big"), s.uid("small"), s.uid("sync")
    refused = dumps(s.request(acct, big, 9000_00))  # more than the 8,000.00 withdrawable
    await kafka.send_many(
        [
            (ACCOUNT_COMMANDS, acct, refused),
            (ACCOUNT_COMMANDS, acct, s.request(acct, small, 200_00)),
        ]
    )
    st = await state(lambda st: small in st.withdrawals, "the request after the refused one")
    assert big not in st.withdrawals  # refused: exceeds_withdrawable
    await kafka.send_many(
        [
            (TRADES, acct, s.opened(acct, "p-2", "1000.00")),
            (TRADES, acct, s.closed(acct, "p-2", "5000.00")),
        ]
    )
    await state(lambda st: st.closed_positions_count == 2, "more profit")
    # The refused record again, byte for byte, then a marker to know it was processed.
    await kafka.send_many(
        [(ACCOUNT_COMMANDS, acct, refused), (ACCOUNT_COMMANDS, acct, s.request(acct, sync, 100_00))]
    )
    st = await state(lambda st: sync in st.withdrawals, "the marker request")
    assert big not in st.withdrawals, (
        f"the refused request {big} was accepted when read again: "
        f"{st.withdrawals[big].status}, {st.withdrawals[big].amount_cents} cents"
    )
