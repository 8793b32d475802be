"""The largest value an account can reach, and the largest record it can send, stay sendable.

Hardening defect 6: the stored value used to hold every applied id (10,000 ids of up to 200
characters: 2.16 MB), past Kafka's 1 MB message limit. Now the value holds only bounded parts
(domain/state.py); this test drives an account through the core with the longest ids and texts
every parser allows, to every bound at once, and measures the value as the table stores it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from faust.serializers import codecs

from app.codec import dumps
from domain.account import DictMemory, Outcome, step
from domain.events import (
    MAX_PAYOUT_REASON_LENGTH,
    ActivateAccount,
    Message,
    PayoutFailed,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RequestWithdrawal,
)
from domain.fields import MAX_ID_LENGTH
from domain.ids import withdrawal_id_for
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.state import MAX_OPEN_POSITIONS, MAX_OPEN_WITHDRAWALS, RECENT_IDS, RECENT_SETTLED
from tables.accounts import OUTBOX_LIMIT, dump
from tests.unit.domain.story import T0, tier

# Kafka's default message limit (the producer's max.request.size and the broker's
# message.max.bytes are both about 1 MiB); a record must fit with its key and headers.
KAFKA_LIMIT = 1_048_576
DESTINATION = "acct_" + "A" * 250  # the longest destination the policy accepts


def long_id(tag: str, i: int) -> str:
    return f"{tag}-{i:06d}-".ljust(MAX_ID_LENGTH, "x")


def test_the_largest_account_value_is_sendable() -> None:
    memory = DictMemory()
    user = "u".ljust(MAX_ID_LENGTH, "u")
    terms = tier(tier_id="t".ljust(MAX_ID_LENGTH, "t"), name="n".ljust(MAX_ID_LENGTH, "n"))
    activation = ActivateAccount(
        long_id("act", 0), "", user, "a".ljust(MAX_ID_LENGTH, "a"), terms, T0
    )
    account = ""
    clock = [T0]

    def at() -> datetime:
        clock[0] += timedelta(seconds=1)
        return clock[0]

    state = None
    biggest: list[dict[str, object]] = []
    n = [0]

    def send(message: Message) -> Outcome:
        nonlocal state, biggest
        outcome = step(state, message, memory)
        memory.record(message, outcome)
        assert not outcome.dead_letter, outcome.detail
        state = outcome.state
        if len(dumps(outcome.facts)) > len(dumps(biggest)):
            biggest = outcome.facts
        return outcome

    from domain.events import account_id_for

    account = account_id_for(activation.assessment_id)
    activation = ActivateAccount(
        activation.event_id, account, user, activation.assessment_id, terms, T0
    )
    send(activation)

    def eid() -> str:
        n[0] += 1
        return long_id("e", n[0])

    # A large profit, so withdrawals can be made.
    pid = long_id("p", 0)
    send(
        PositionOpened(eid(), account, pid, "S" * 64, "long", Decimal(1), Decimal(1), 100_00, at())
    )
    send(PositionClosed(eid(), account, pid, 900_000_00, at()))
    # Settled withdrawals with the longest payout failure reason, past the value's share.
    for i in range(RECENT_SETTLED + 3):
        wid = withdrawal_id_for(account, user, f"settled-{i}")
        send(
            RequestWithdrawal(
                eid(), account, user, wid, 500_00, "stripe_connect", DESTINATION, at()
            )
        )
        send(PayoutFailed(eid(), account, wid, "r" * MAX_PAYOUT_REASON_LENGTH, at()))
    # Every open withdrawal the value allows, pending review.
    for i in range(MAX_OPEN_WITHDRAWALS):
        wid = withdrawal_id_for(account, user, f"open-{i}")
        send(
            RequestWithdrawal(
                eid(), account, user, wid, 2_000_00, "stripe_connect", DESTINATION, at()
            )
        )
    # Every open position the value allows, with the longest ids and symbols.
    for i in range(MAX_OPEN_POSITIONS):
        send(
            PositionOpened(
                eid(),
                account,
                long_id("p", i + 1),
                "S" * 64,
                "short",
                Decimal("123456789.12345678"),
                Decimal("98765.4321"),
                10_00,
                at(),
            )
        )
    for _ in range(RECENT_IDS):
        send(PositionUpdated(eid(), account, long_id("p", 1), -1_00, None, at()))
    assert state is not None
    assert len(state.positions) == MAX_OPEN_POSITIONS
    assert state.open_withdrawals_count == MAX_OPEN_WITHDRAWALS
    assert len(state.withdrawals) == MAX_OPEN_WITHDRAWALS + RECENT_SETTLED
    assert len(state.recent_ids) == RECENT_IDS
    # The breach: closes the account and rejects every pending withdrawal in one input.
    breach = send(PositionUpdated(eid(), account, long_id("p", 1), -950_000_00, None, at()))
    assert len(breach.facts) >= MAX_OPEN_WITHDRAWALS + 3
    # The outbox full of the largest fact lists seen, from the longest source positions.
    source = "t".ljust(249, "t") + ":2147483647:9223372036854775807"
    outbox = [[long_id("e", i), source, biggest] for i in range(OUTBOX_LIMIT)]
    offsets = {f"{'t' * 249}:{p}": 9223372036854775807 for p in range(2)}
    value = dump(state, outbox, offsets)
    stored = codecs.get_codec("json").dumps(value)
    key = codecs.get_codec("json").dumps(account)
    print(f"largest account value: {len(stored):,} bytes")
    assert len(stored) + len(key) < KAFKA_LIMIT * 0.9
    # Every other record the account agent sends for one input: facts, snapshot, archive.
    for fact in biggest:
        assert len(dumps(fact)) < 10_000
    snap = snapshot(state, withdrawal_ids_in(breach.facts), breach.archive)
    assert len(dumps(snap)) < KAFKA_LIMIT * 0.5
    for w in memory.withdrawals.values():
        assert len(dumps(w.to_dict())) < 10_000
