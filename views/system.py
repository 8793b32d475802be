"""/health, /metrics and the Stripe webhook."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import stripe
from aiohttp import web
from faust.web import View

from app.codec import WireError, dumps, loads_object
from app.riskfeed import LATENCY_BUCKETS
from app.topics import ACCOUNT_COMMANDS
from domain.events import InvalidEvent, ReverseTransfer, parse_command
from domain.ids import account_of_withdrawal
from views.budget import WEBHOOK_SEND_TIMEOUT_SECONDS
from views.context import WebContext
from views.http import ApiError, api, json_response, page, unavailable

log = logging.getLogger(__name__)


def is_healthy(ctx: WebContext) -> tuple[bool, str]:
    app = ctx.ff.app
    if app.rebalancing:
        return False, "rebalancing"
    recovery: Any = getattr(app.tables, "recovery")  # noqa: B009
    if not recovery.completed.is_set():
        return False, "recovering tables"
    if app.consumer.should_stop:
        return False, "consumer stopped"
    return True, "ok"


def _lag(ctx: WebContext) -> int:
    consumer = ctx.ff.app.consumer
    total = 0
    for tp in consumer.assignment():
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        committed = getattr(consumer, "_committed_offset", {}).get(tp)
        if high is not None and committed is not None:
            total += max(0, int(high) - int(committed))
    return total


def metrics_text(ctx: WebContext) -> str:
    ff = ctx.ff
    proc = ff.extras["account_processor"]
    lines = [
        "# HELP fundedflow_events_processed_total Inputs applied by the account agent.",
        "# TYPE fundedflow_events_processed_total counter",
        f"fundedflow_events_processed_total {proc.processed}",
        "# HELP fundedflow_account_batches_total Batches the account agent processed (an input"
        " and those queued behind it).",
        "# TYPE fundedflow_account_batches_total counter",
        f"fundedflow_account_batches_total {proc.batches}",
        "# HELP fundedflow_rule_evaluations_total Rule checks (one per trade event).",
        "# TYPE fundedflow_rule_evaluations_total counter",
        f"fundedflow_rule_evaluations_total {proc.rule_evaluations}",
        "# HELP fundedflow_withdrawals_total Withdrawal facts published, by status.",
        "# TYPE fundedflow_withdrawals_total counter",
    ]
    for status in ("requested", "approved", "completed", "rejected", "failed"):
        count = proc.facts_published.get(f"withdrawal.{status}", 0)
        lines.append(f'fundedflow_withdrawals_total{{status="{status}"}} {count}')
    lines += [
        "# HELP fundedflow_consumer_lag_messages Messages not yet committed on this worker.",
        "# TYPE fundedflow_consumer_lag_messages gauge",
        f"fundedflow_consumer_lag_messages {_lag(ctx)}",
    ]
    sink: dict[str, Any] = ff.extras.get("sink_metrics", {})
    sink_lag = sink.get("lag_seconds") or 0
    lines += [
        "# HELP fundedflow_sink_lag_seconds How far PostgreSQL is behind the stream.",
        "# TYPE fundedflow_sink_lag_seconds gauge",
        f"fundedflow_sink_lag_seconds {sink_lag:.3f}",
        "# HELP fundedflow_sink_errors_total Failed database batches (retried).",
        "# TYPE fundedflow_sink_errors_total counter",
        f"fundedflow_sink_errors_total {int(sink.get('errors') or 0)}",
        "# HELP fundedflow_sink_set_aside_total Records the database refused, sent to sink.dlq.",
        "# TYPE fundedflow_sink_set_aside_total counter",
        f"fundedflow_sink_set_aside_total {int(sink.get('set_aside') or 0)}",
        "# HELP fundedflow_dead_letters_total Inputs sent to a dead-letter topic.",
        "# TYPE fundedflow_dead_letters_total counter",
    ]
    for topic, count in sorted(ff.extras.get("dead_letters", {}).items()):
        lines.append(f'fundedflow_dead_letters_total{{topic="{topic}"}} {count}')
    lines += [
        "# HELP fundedflow_ratelimit_redis_failures_total POST requests let through: Redis down.",
        "# TYPE fundedflow_ratelimit_redis_failures_total counter",
        f"fundedflow_ratelimit_redis_failures_total {ctx.limiter.redis_failures}",
    ]
    lines += risk_feed_metrics(ctx)
    return "\n".join(lines) + "\n"


def risk_feed_metrics(ctx: WebContext) -> list[str]:
    """The live risk feed: this worker's streams, what they sent and coalesced, the latency
    from the owner's publish to the send here, and the owner side's publishing."""
    ff = ctx.ff
    stats = ff.extras.get("risk_stream_stats")
    publisher = ff.extras.get("risk_publisher")
    hub = ff.extras.get("risk_hub")
    lines: list[str] = []
    if stats is not None:
        lines += [
            "# HELP fundedflow_risk_streams Risk streams connected to this worker.",
            "# TYPE fundedflow_risk_streams gauge",
            f"fundedflow_risk_streams {stats.connected}",
            "# HELP fundedflow_risk_events_sent_total Risk views sent on this worker's streams.",
            "# TYPE fundedflow_risk_events_sent_total counter",
            f"fundedflow_risk_events_sent_total {stats.sent}",
            "# HELP fundedflow_risk_events_coalesced_total Views replaced by a newer one before"
            " a slow stream could send them.",
            "# TYPE fundedflow_risk_events_coalesced_total counter",
            f"fundedflow_risk_events_coalesced_total {stats.coalesced}",
            "# HELP fundedflow_risk_polls_total Views read from the owner while Redis was down.",
            "# TYPE fundedflow_risk_polls_total counter",
            f"fundedflow_risk_polls_total {stats.polled}",
            "# HELP fundedflow_risk_publish_to_send_seconds From the owner's publish to the"
            " send on this worker's stream.",
            "# TYPE fundedflow_risk_publish_to_send_seconds histogram",
        ]
        for bound in LATENCY_BUCKETS:
            lines.append(
                f'fundedflow_risk_publish_to_send_seconds_bucket{{le="{bound}"}} '
                f"{stats.latency_buckets.get(bound, 0)}"
            )
        lines += [
            f'fundedflow_risk_publish_to_send_seconds_bucket{{le="+Inf"}} {stats.latency_count}',
            f"fundedflow_risk_publish_to_send_seconds_sum {stats.latency_sum:.6f}",
            f"fundedflow_risk_publish_to_send_seconds_count {stats.latency_count}",
        ]
    if hub is not None:
        lines += [
            "# HELP fundedflow_risk_feed_up Whether this worker's Redis subscription is up.",
            "# TYPE fundedflow_risk_feed_up gauge",
            f"fundedflow_risk_feed_up {1 if hub.up else 0}",
        ]
    if publisher is not None:
        lines += [
            "# HELP fundedflow_risk_views_published_total Risk views this owner published.",
            "# TYPE fundedflow_risk_views_published_total counter",
            f"fundedflow_risk_views_published_total {publisher.published}",
            "# HELP fundedflow_risk_views_unwatched_total Changes no worker streamed: no view"
            " was built.",
            "# TYPE fundedflow_risk_views_unwatched_total counter",
            f"fundedflow_risk_views_unwatched_total {publisher.unwatched}",
            "# HELP fundedflow_risk_views_dropped_total Views not published: Redis unreachable.",
            "# TYPE fundedflow_risk_views_dropped_total counter",
            f"fundedflow_risk_views_dropped_total {publisher.dropped}",
        ]
    return lines


async def send_bounded(ctx: WebContext, account_id: str, command: dict[str, Any]) -> None:
    """Hand a command to the broker within WEBHOOK_SEND_TIMEOUT_SECONDS, else 503: Stripe
    delivers the event again later, and its event id makes the repeat one command."""
    try:
        sent = await asyncio.wait_for(
            ctx.ff.topic(ACCOUNT_COMMANDS).send(
                key=account_id.encode(), value=dumps(command), force=True
            ),
            WEBHOOK_SEND_TIMEOUT_SECONDS,
        )
        await asyncio.wait_for(sent, WEBHOOK_SEND_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("webhook command for %s not taken by the broker in time", account_id)
        raise unavailable("the event could not be recorded in time; deliver it again") from None


def _cents(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reversed_amount(transfer: dict[str, Any]) -> int | None:
    """The transfer's cumulative reversed cents: `amount_reversed`; for a payload without it, all
    of `amount` when `reversed` is true. None when neither tells (nothing is applied)."""
    cents = _cents(transfer.get("amount_reversed"))
    if cents is None and transfer.get("reversed") is True:
        cents = _cents(transfer.get("amount"))
    return cents if cents is not None and cents > 0 else None


# Stripe's `created` is seconds since the epoch; past this it is not a time of this world.
_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z


def reversal_command(raw: dict[str, Any], now: float) -> ReverseTransfer | None:
    """The account command of a verified Stripe event: None for an event this system does not
    handle (another type, or a transfer of a withdrawal it never made); InvalidEvent for a
    `transfer.reversed` it cannot use. Fields of the wrong JSON type are refused here, and the
    command is read back by the parser the account agent uses, so what is sent is applied."""
    if raw.get("type") != "transfer.reversed":
        return None
    data = raw.get("data")
    transfer = data.get("object") if isinstance(data, dict) else None
    if not isinstance(transfer, dict):
        raise InvalidEvent("invalid_field", "data.object is not a transfer")
    metadata = transfer.get("metadata")
    withdrawal_id = metadata.get("withdrawal_id") if isinstance(metadata, dict) else None
    account_id = account_of_withdrawal(withdrawal_id) if isinstance(withdrawal_id, str) else None
    if account_id is None or not isinstance(withdrawal_id, str):
        log.warning("transfer.reversed for an unknown withdrawal: %r", transfer.get("id"))
        return None
    reversed_cents = reversed_amount(transfer)
    if reversed_cents is None:
        raise InvalidEvent("invalid_field", "transfer.reversed without a usable amount_reversed")
    event_id, transfer_id = raw.get("id"), transfer.get("id")
    if not isinstance(event_id, str) or not isinstance(transfer_id, str):
        raise InvalidEvent("invalid_field", "the event's and the transfer's ids must be strings")
    created = raw.get("created")
    if (
        not isinstance(created, int)
        or isinstance(created, bool)
        or not 0 <= created <= _LAST_SECOND
    ):
        created = int(now)
    cmd = ReverseTransfer(
        # The Stripe event id: the same event delivered twice is one command.
        event_id=f"stripe-event:{event_id}",
        account_id=account_id,
        withdrawal_id=withdrawal_id,
        stripe_transfer_id=transfer_id,
        # Cumulative: Stripe sends transfer.reversed for partial reversals too, and the
        # account gives back only what is newly reversed (domain/account.py).
        amount_reversed_cents=reversed_cents,
        at=datetime.fromtimestamp(created, UTC),
    )
    parsed = parse_command(cmd.to_wire())  # raises InvalidEvent as the agent would
    assert isinstance(parsed, ReverseTransfer)
    return parsed


def register(ctx: WebContext) -> None:
    app = ctx.ff.app
    settings = ctx.ff.settings

    @page(app, "/health")
    @api
    async def health(self: Any, request: web.Request) -> web.Response:
        ok, why = is_healthy(ctx)
        headers = {} if ok else {"Retry-After": "2"}
        return json_response(
            {"status": "ok" if ok else "unavailable", "detail": why}, 200 if ok else 503, headers
        )

    @page(app, "/metrics")
    @api
    async def metrics(self: Any, request: web.Request) -> web.Response:
        ctx.principal(request)
        return web.Response(text=metrics_text(ctx), content_type="text/plain")

    class StripeWebhook(View):
        @api
        async def post(self, request: web.Request) -> web.Response:
            if not settings.stripe_webhook_secret:
                raise ApiError(
                    503,
                    "webhooks_disabled",
                    "STRIPE_WEBHOOK_SECRET is not set",
                    {"Retry-After": "60"},
                )
            body = await request.read()
            signature = request.headers.get("Stripe-Signature", "")
            if not signature.isascii():
                # Stripe's comparison raises TypeError on non-ASCII text; no real signature is.
                raise ApiError(400, "invalid_signature", "webhook refused: malformed signature")
            try:
                # Stripe signs UTF-8 bytes: decoded here, not by the request's charset, so a body
                # that is not UTF-8 (or names an unknown charset) is refused, not a 500.
                payload = body.decode("utf-8")
                # The signature only, with Stripe's own check (and its 300 s tolerance): the
                # payload is then read by the codec every input goes through, not by Stripe's
                # object wrapper, which takes any JSON (a list, a deep value) and fails later.
                stripe.WebhookSignature.verify_header(
                    payload, signature, settings.stripe_webhook_secret, tolerance=300
                )
            except (stripe.SignatureVerificationError, ValueError) as exc:
                raise ApiError(400, "invalid_signature", f"webhook refused: {exc}") from None
            # Malformed JSON, NUL, lone surrogates, nesting past the codec's depth: 400.
            try:
                raw: dict[str, Any] = loads_object(payload)
            except WireError as exc:
                raise ApiError(400, "invalid_request", f"webhook payload refused: {exc}") from None
            try:
                cmd = reversal_command(raw, now=time.time())
            except InvalidEvent as exc:
                raise ApiError(400, "invalid_payload", f"webhook payload refused: {exc}") from None
            if cmd is None:
                return json_response({"received": True, "handled": False})
            account_id = cmd.account_id
            await send_bounded(ctx, account_id, cmd.to_wire())
            return json_response({"received": True, "handled": True})

    app.page("/webhooks/stripe")(StripeWebhook)
