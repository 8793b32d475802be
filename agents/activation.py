"""Activation: a passed assessment becomes one ActivateAccount command for the account agent.

The account id is derived from the assessment id, so however often the event is delivered the
command lands on the same account, and the account agent turns every repeat into a no-op.
"""

from __future__ import annotations

import logging

import faust

from agents.dead_letters import send_dead_letter
from app.codec import WireError, dumps, loads_object
from app.durable import send_durable
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS, ASSESSMENT_COMPLETED
from domain.events import InvalidEvent, activation_for, parse_assessment

log = logging.getLogger(__name__)


def register(ff: FundedFlow) -> None:
    commands = ff.topic(ACCOUNT_COMMANDS)

    @ff.app.agent(ff.topic(ASSESSMENT_COMPLETED), name="activation")
    async def activate(stream: faust.StreamT[bytes]) -> None:
        catalog = ff.extras["tier_catalog"]
        async for event in stream.events():
            await catalog.ready.wait()
            try:
                assessment = parse_assessment(loads_object(event.message.value))
            except (WireError, InvalidEvent) as exc:
                await send_dead_letter(ff, ASSESSMENT_COMPLETED, event, f"invalid_event: {exc}")
                continue
            tier = catalog.get(assessment.tier_id)
            if tier is None:
                if assessment.status == "passed":
                    await send_dead_letter(
                        ff, ASSESSMENT_COMPLETED, event, f"unknown_tier: {assessment.tier_id}"
                    )
                continue
            cmd = activation_for(assessment, tier)
            if cmd is None:
                continue  # failed, or passed without completed_at: no account
            account_id = cmd.account_id
            await send_durable(commands, key=account_id.encode(), value=dumps(cmd.to_wire()))
