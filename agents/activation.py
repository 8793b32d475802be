"""Activation: a passed assessment becomes one ActivateAccount command for the account agent.

The account id is derived from the assessment id, so however often the event is delivered the
command lands on the same account, and the account agent turns every repeat into a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from agents.dead_letters import send_dead_letter
from app.codec import WireError, dumps, loads_object
from app.durable import send_durable
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS, ASSESSMENT_COMPLETED
from domain.events import InvalidEvent, activation_for, parse_assessment

log = logging.getLogger(__name__)


async def activate_one(ff: FundedFlow, catalog: Any, event: faust.types.EventT[bytes]) -> None:
    """One `assessment.completed`: an activation command for a passed assessment of a known
    tier, a dead letter for what cannot be read, nothing for a failed one."""
    try:
        assessment = parse_assessment(loads_object(event.message.value))
    except (WireError, InvalidEvent) as exc:
        await send_dead_letter(ff, ASSESSMENT_COMPLETED, event, f"invalid_event: {exc}")
        return
    tier = catalog.get(assessment.tier_id)
    if tier is None:
        if assessment.status == "passed":
            await send_dead_letter(
                ff, ASSESSMENT_COMPLETED, event, f"unknown_tier: {assessment.tier_id}"
            )
        return
    cmd = activation_for(assessment, tier)
    if cmd is None:
        return  # failed, or passed without completed_at: no account
    await send_durable(
        ff.topic(ACCOUNT_COMMANDS), key=cmd.account_id.encode(), value=dumps(cmd.to_wire())
    )


def register(ff: FundedFlow) -> None:
    @ff.app.agent(ff.topic(ASSESSMENT_COMPLETED), name="activation")
    async def activate(stream: faust.StreamT[bytes]) -> None:
        catalog = ff.extras["tier_catalog"]
        async for event in stream.events():
            await catalog.ready.wait()
            await activate_one(ff, catalog, event)
