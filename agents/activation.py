"""Activation: a passed assessment becomes one ActivateAccount command for the account agent.

The account id is derived from the assessment id, so however often the event is delivered the
command lands on the same account, and the account agent turns every repeat into a no-op.
"""

from __future__ import annotations

import logging

import faust

from agents.dead_letters import send_dead_letter
from app.codec import WireError, dumps, loads_object
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS, ASSESSMENT_COMPLETED
from domain.events import ActivateAccount, InvalidEvent, account_id_for, parse_assessment

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
            if assessment.status != "passed" or assessment.completed_at is None:
                continue
            tier = catalog.get(assessment.tier_id)
            if tier is None:
                await send_dead_letter(
                    ff, ASSESSMENT_COMPLETED, event, f"unknown_tier: {assessment.tier_id}"
                )
                continue
            account_id = account_id_for(assessment.assessment_id)
            cmd = ActivateAccount(
                event_id=f"activate:{assessment.assessment_id}",
                account_id=account_id,
                user_id=assessment.user_id,
                assessment_id=assessment.assessment_id,
                tier=tier,
                activated_at=assessment.completed_at,
            )
            await commands.send(key=account_id.encode(), value=dumps(cmd.to_wire()), force=True)
