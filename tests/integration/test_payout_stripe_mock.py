"""Payouts against Stripe's API.

- stripe-mock (the stack's, built from Stripe's OpenAPI spec) proves the transfer request has a
  shape Stripe accepts. It is stateless: its list endpoint ignores filters and answers a fixture
  transfer, which the payout agent's transfer-group look-up must not take for this withdrawal's.
- The recording double proves the retries: a 5xx, a 429 rate limit or a connection closed
  without an answer, before or after the transfer is made, is tried again after a pause, with
  the same idempotency key, and the withdrawal still gets exactly one transfer; a refusal
  (a 4xx about the request itself) is final and is not sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import stripe

from agents.payouts import BACKOFF_SECONDS
from app.settings import Settings
from app.stripe_payouts import PayoutGateway, TransferMade, TransientStripeError, idempotency_key
from app.tiers_seed import seed_tiers
from domain.state import AccountState
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until, worker_env
from tests.integration.stripe_double import StripeDouble
from tests.support import free_port

pytestmark = pytest.mark.integration

COMMANDS = "fundedflow.account-commands"


def start_worker(env: dict[str, str], tmp: Path) -> Worker:
    asyncio.run(seed_tiers(Settings.from_env(env)))
    w = Worker(env, tmp / "data", tmp / "worker.log").start()
    asyncio.run(w.wait_ready())
    return w


@pytest.fixture(scope="module")
def mock_worker(
    services: Services, module_schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = worker_env(
        services,
        s.uid("smock") + ".",
        STRIPE_API_BASE=services.stripe_api_base,
        FUNDEDFLOW_DB_SCHEMA=module_schema,
    )
    w = start_worker(env, tmp_path_factory.mktemp("smock"))
    yield w
    w.stop()


@pytest.fixture(scope="module")
def double_worker(
    services: Services,
    double: StripeDouble,
    module_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    env = worker_env(
        services,
        s.uid("sdbl") + ".",
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
    )
    w = start_worker(env, tmp_path_factory.mktemp("sdbl"))
    yield w
    w.stop()


async def kafka_for(services: Services, worker: Worker) -> Kafka:
    k = Kafka(services, worker.env["FUNDEDFLOW_TOPIC_PREFIX"])
    k.workers.append(worker)
    await k.start()
    return k


@pytest.fixture
async def mock_kafka(services: Services, mock_worker: Worker) -> AsyncIterator[Kafka]:
    k = await kafka_for(services, mock_worker)
    yield k
    await k.stop()


@pytest.fixture
async def double_kafka(
    services: Services, double_worker: Worker, double: StripeDouble
) -> AsyncIterator[Kafka]:
    k = await kafka_for(services, double_worker)
    try:
        yield k
    finally:
        double.disarm()
        await k.stop()


async def state_of(
    kafka: Kafka, acct: str, check: Callable[[AccountState], bool], what: str
) -> AccountState:
    async def probe() -> AccountState | None:
        kafka.check_workers()
        value = (await kafka.accounts()).get(acct)
        if value is None:
            return None
        st = AccountState.from_dict(value["state"])
        return st if check(st) else None

    try:
        return await wait_until(probe, timeout=60, what=what)
    except AssertionError:
        raise AssertionError(f"{what}:\n{kafka.workers[0].tail()}") from None


async def profitable_account(kafka: Kafka) -> str:
    """An active account with 10,000.00 realized profit: withdrawable 8,000.00."""
    asm = s.uid("asm")
    acct = s.account_of(asm)
    await kafka.send("assessment.completed", asm, s.assessment(asm))
    await state_of(kafka, acct, lambda st: True, "activation")
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-1", "1000.00")),
            ("trades", acct, s.closed(acct, "p-1", "10000.00")),
        ]
    )
    await state_of(kafka, acct, lambda st: st.closed_positions_count == 1, "profit")
    return acct


def settled(wid: str) -> Callable[[AccountState], bool]:
    return lambda st: (
        wid in st.withdrawals
        and st.withdrawals[wid].status
        in (
            "completed",
            "failed",
            "rejected",
        )
    )


# --- stripe-mock -----------------------------------------------------------------------------


async def test_small_withdrawal_is_paid_through_stripe_mock(
    services: Services, mock_kafka: Kafka
) -> None:
    kafka = mock_kafka
    acct = await profitable_account(kafka)
    wid = s.uid("w")
    await kafka.send(COMMANDS, acct, s.request(acct, wid, 250_00))
    st = await state_of(kafka, acct, settled(wid), "withdrawal settled at stripe-mock")
    w = st.withdrawals[wid]
    assert w.status == "completed", (w.status, w.rejection_reason)
    assert w.stripe_payout_id is not None and w.stripe_payout_id.startswith("tr_")
    assert st.total_withdrawals_cents == 250_00 and st.withdrawable_cents == 8000_00 - 250_00

    # stripe-mock's list ignores `transfer_group` and answers a fixture transfer: the agent's
    # look-up must not have taken it for this withdrawal's (its metadata has no withdrawal_id).
    client = stripe.StripeClient("sk_test_123", base_addresses={"api": services.stripe_api_base})
    listed = client.v1.transfers.list(params={"transfer_group": idempotency_key(wid)})
    fixture_ids = {t.id for t in listed.data}
    assert fixture_ids, "stripe-mock answered no transfer at all"
    assert all(not t.to_dict().get("metadata") for t in listed.data)
    assert w.stripe_payout_id not in fixture_ids

    await asyncio.sleep(1)
    completed = [
        f
        for f in await kafka.facts("withdrawal.completed")
        if f["account_id"] == acct and f["withdrawal_id"] == wid
    ]
    assert [f["stripe_payout_id"] for f in completed] == [w.stripe_payout_id]
    assert completed[0]["amount"] == "250.00"


async def test_transfer_group_lookup_against_stripe_mock(services: Services) -> None:
    """The look-up the payout agent makes before every transfer, on its own."""
    gateway = PayoutGateway("sk_test_123", services.stripe_api_base)
    try:
        # stripe-mock answers a fixture transfer without our metadata: not ours, none yet.
        assert await gateway.find_existing("w-lookup-1", "fa_1") is None
        made = await gateway.transfer(
            withdrawal_id="w-lookup-1",
            account_id="fa_1",
            user_id="usr_1",
            amount_cents=123_45,
            destination="acct_1Test",
        )
    finally:
        await gateway.close()
    assert isinstance(made, TransferMade), made
    assert made.transfer_id.startswith("tr_")


async def test_lookup_ignores_another_accounts_transfer_under_the_same_withdrawal_id(
    double: StripeDouble,
) -> None:
    """Withdrawal ids on the command topic are the caller's: a transfer another account got
    under the same id is not this account's payout (it would settle the withdrawal unpaid)."""
    wid = s.uid("w-shared")
    gateway = PayoutGateway("sk_test_123", f"http://127.0.0.1:{double.port}")
    try:
        made = await gateway.transfer(
            withdrawal_id=wid,
            account_id="fa_other",
            user_id="usr_other",
            amount_cents=500_00,
            destination="acct_1Other",
        )
        assert isinstance(made, TransferMade)
        assert await gateway.find_existing(wid, "fa_other") == made.transfer_id
        assert await gateway.find_existing(wid, "fa_mine") is None
    finally:
        await gateway.close()


async def test_unreachable_stripe_is_a_transient_error() -> None:
    """Connection refused (nothing listens): retried later, never taken for a refusal."""
    gateway = PayoutGateway("sk_test_123", f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientStripeError):
            await gateway.find_existing("w-refused-1", "fa_1")
        with pytest.raises(TransientStripeError):
            await gateway.transfer(
                withdrawal_id="w-refused-1",
                account_id="fa_1",
                user_id="usr_1",
                amount_cents=100_00,
                destination="acct_1Test",
            )
    finally:
        await gateway.close()


# --- the recording double --------------------------------------------------------------------


# (the double's fault knob, how many times, whether the transfer is made before the fault)
TRANSIENT_FAULTS = {
    "500_before_create": ("fail_next_with_500", 2, False),
    "500_after_create": ("fail_after_create_with_500", 1, True),
    "429_rate_limit": ("rate_limit_next", 2, False),
    "reset_before_create": ("reset_next", 2, False),
    "reset_after_create": ("reset_after_create", 1, True),
}


@pytest.mark.parametrize("failure", list(TRANSIENT_FAULTS))
async def test_transient_stripe_error_is_retried_with_one_transfer(
    double_kafka: Kafka, double: StripeDouble, failure: str
) -> None:
    kafka = double_kafka
    knob, times, made_first = TRANSIENT_FAULTS[failure]
    acct = await profitable_account(kafka)
    wid = s.uid("w")
    setattr(double, knob, times)
    await kafka.send(COMMANDS, acct, s.request(acct, wid, 300_00))
    st = await state_of(kafka, acct, settled(wid), f"withdrawal settled after {failure}")
    w = st.withdrawals[wid]
    assert w.status == "completed", (w.status, w.rejection_reason)
    assert getattr(double, knob) == 0  # every armed fault was met
    assert double.created_per_withdrawal[wid] == 1
    assert w.stripe_payout_id in double.transfers
    assert double.transfers[w.stripe_payout_id]["metadata"]["withdrawal_id"] == wid
    # Every attempt carried the one key CONTRACT.md section 5 names, and it is the key the
    # transfer was made under.
    key = f"withdrawal-{wid}"
    assert double.keys_per_withdrawal[wid] == [key] * double.posts_per_withdrawal[wid]
    assert double.by_key[key] == w.stripe_payout_id
    if made_first:
        # The retry found the transfer through its group instead of asking for another.
        assert double.posts_per_withdrawal[wid] == 1
    else:
        assert double.posts_per_withdrawal[wid] == times + 1  # the failed ones and the good one
        # With backoff: each retry waited at least its pause (an immediate retry would come
        # within milliseconds and hammer a rate-limited or unreachable Stripe).
        times_seen = double.post_times[wid]
        gaps = [b - a for a, b in itertools.pairwise(times_seen)]
        assert all(gap >= pause for gap, pause in zip(gaps, BACKOFF_SECONDS, strict=False)), gaps
    await asyncio.sleep(1)
    assert double.created_per_withdrawal[wid] == 1  # nothing more came later
    log = kafka.workers[0].tail(200_000)
    assert f"stripe transient error for {wid}" in log
    facts = [
        json.dumps(f, sort_keys=True)
        for f in await kafka.facts("withdrawal.completed", "withdrawal.failed")
        if f["withdrawal_id"] == wid
    ]
    assert len(facts) == 1 and '"withdrawal.completed"' in facts[0]


@pytest.mark.parametrize(
    "destination,code",
    [("acct_refuseMe", "account_invalid"), ("acct_declineMe", "card_declined")],
)
async def test_stripe_refusal_is_final_and_not_retried(
    double_kafka: Kafka, double: StripeDouble, destination: str, code: str
) -> None:
    kafka = double_kafka
    acct = await profitable_account(kafka)
    wid = s.uid("w")
    await kafka.send(COMMANDS, acct, s.request(acct, wid, 300_00, destination=destination))
    st = await state_of(kafka, acct, settled(wid), "refused withdrawal settled")
    w = st.withdrawals[wid]
    assert w.status == "failed", (w.status, w.rejection_reason)
    assert w.rejection_reason is not None
    assert w.rejection_reason.startswith(f"stripe_refused: {code}"), w.rejection_reason
    assert w.stripe_payout_id is None
    # The amount is withdrawable again.
    assert st.total_withdrawals_cents == 0 and st.withdrawable_cents == 8000_00
    # Longer than the first two pauses together: a retry would have arrived by now.
    await asyncio.sleep(sum(BACKOFF_SECONDS[:2]) + 1)
    assert double.posts_per_withdrawal[wid] == 1
    assert double.keys_per_withdrawal[wid] == [f"withdrawal-{wid}"]
    assert double.created_per_withdrawal[wid] == 0
    assert f"withdrawal-{wid}" not in double.by_key
    assert f"stripe transient error for {wid}" not in kafka.workers[0].tail(200_000)
    facts = [
        f
        for f in await kafka.facts("withdrawal.completed", "withdrawal.failed")
        if f["withdrawal_id"] == wid
    ]
    assert [f["type"] for f in facts] == ["withdrawal.failed"]
    assert facts[0]["reason"] == w.rejection_reason
