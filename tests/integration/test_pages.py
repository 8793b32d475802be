"""The trader and admin pages in a real browser: Debian's headless Chromium driven by
Playwright's Python package (pointed at that binary; no browser download), against two real
workers. Screenshots of each page go to the test's output folder (`tmp_path`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration import pair
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker
from tests.integration.http_support import Http, auth, token
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

BOTH = (0, 1)
TRADER = "usr_browser"


def chromium() -> str:
    path = os.environ.get("FUNDEDFLOW_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("no Chromium: scripts/test.sh installs Debian's chromium (scripts/browser.sh)")
    return path


@pytest.fixture(scope="module")
def workers(
    services: Services,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, list[Worker]]]:
    prefix = s.uid("pages") + "."
    for ws in pair.started(
        services, prefix, module_schema, double, tmp_path_factory.mktemp("pages")
    ):
        yield prefix, ws


@pytest.fixture
async def kafka(services: Services, workers: tuple[str, list[Worker]]) -> AsyncIterator[Kafka]:
    prefix, ws = workers
    async with pair.kafka(services, prefix, ws) as k:
        yield k


async def listed(http: Http, owner: dict[str, str], acct: str) -> None:
    """Wait until the account is in the trader's list: it comes from PostgreSQL (the sink)."""
    for _ in range(100):
        answer = await http.get(0, "/funded-accounts", owner)
        if any(x["id"] == acct for x in answer.body["funded_accounts"]):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{acct} never reached the list of accounts")


async def pending_withdrawal(
    http: Http, worker: int, owner: dict[str, str], acct: str, amount: str
) -> str:
    """Request a withdrawal over the review limit through `worker`; its id (it waits)."""
    answer = await http.post(
        worker,
        f"/funded-accounts/{acct}/withdraw",
        {"amount": amount, "payment_method": "stripe_connect", "destination": "acct_1Browser"},
        owner,
    )
    assert answer.status == 201 and answer.body["withdrawal"]["status"] == "pending"
    return str(answer.body["withdrawal"]["id"])


async def signed_in(browser: Any, url: str, user: str, roles: list[str] | None = None) -> Any:
    """A new page at `url`, signed in with a token of `user` (kept in sessionStorage)."""
    page = await browser.new_page()
    await page.goto(url)
    await page.fill("#token", token(user, roles))
    await page.click("#signin button[type=submit]")
    return page


async def test_trader_and_admin_pages_in_chromium(
    workers: tuple[str, list[Worker]], kafka: Kafka, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = chromium()
    _, ws = workers
    async with Http(ws) as http:
        await http.wait_healthy()
        asm = s.uid("asm")
        await kafka.send("assessment.completed", asm, s.assessment(asm, TRADER))
        acct = s.account_of(asm)
        owner = auth(TRADER)
        await http.account_when(0, acct, owner, lambda a: True, timeout=90)
        await kafka.send("trades", acct, s.opened(acct, "p-1", "2000.00"))
        await http.account_when(0, acct, owner, lambda a: len(a["positions"]) == 1)
        await listed(http, owner, acct)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, headless=True)
            try:
                page = await signed_in(browser, http.url(1, "/app/"), TRADER)
                card = f"article[data-account='{acct}']"
                gauge = f"{card} .gauge[data-rule='drawdown']"
                await page.wait_for_selector(f"{gauge}[data-status='safe']", timeout=15_000)
                await page.wait_for_selector(f"{card} .feed[data-state='live']", timeout=15_000)

                # A trade published to Kafka moves the gauge within a second.
                sent = time.monotonic()
                await kafka.send("trades", acct, s.updated(acct, "p-1", "-8500.00", None))
                await page.wait_for_selector(f"{gauge}[data-status='warning']", timeout=1_000)
                moved_after = time.monotonic() - sent
                assert moved_after <= 1.0, moved_after
                used = await page.get_attribute(gauge, "data-used")
                assert used == "85"  # 0.085 of a 0.10 drawdown
                await page.screenshot(path=str(tmp_path / "trader.png"), full_page=True)

                # Profit, positions closed: a withdrawal from the form is paid at once.
                await kafka.send("trades", acct, s.closed(acct, "p-1", "5000.00"))
                await page.wait_for_selector(
                    f"{card} [data-eligible='true']", timeout=15_000
                )  # the payout pre-check follows the stream
                await page.fill(f"{card} form.withdraw input[name=amount]", "250.00")
                await page.fill(f"{card} form.withdraw input[name=destination]", "acct_1Browser")
                await page.click(f"{card} form.withdraw button[type=submit]")
                await page.wait_for_selector(
                    f"{card} form.withdraw .result[data-status='completed']", timeout=25_000
                )
                await page.wait_for_selector(
                    f"{card} table.withdrawals tr[data-status='completed']", timeout=15_000
                )
                await page.screenshot(path=str(tmp_path / "trader-withdrawn.png"), full_page=True)

                # A large one waits for an admin, who approves it from the admin page.
                wid = await pending_withdrawal(http, 0, owner, acct, "1500.00")
                admin = await signed_in(
                    browser, http.url(0, "/app/admin"), "adm_browser", ["admin"]
                )
                pending = f"article[data-withdrawal='{wid}']"
                await admin.wait_for_selector(pending, timeout=20_000)
                await admin.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
                await admin.click(f"{pending} button.approve")
                await admin.wait_for_selector(
                    f"{pending} .result[data-status='completed']", timeout=25_000
                )
                await admin.screenshot(path=str(tmp_path / "admin-approved.png"), full_page=True)

                # Another large one, rejected from the page: not without a reason.
                rid = await pending_withdrawal(http, 1, owner, acct, "1200.00")
                await admin.click("#refresh")
                rejecting = f"article[data-withdrawal='{rid}']"
                await admin.wait_for_selector(rejecting, timeout=20_000)
                await admin.click(f"{rejecting} form.reject button[type=submit]")
                await asyncio.sleep(0.5)  # an empty reason is stopped by the form itself
                assert await admin.get_attribute(f"{rejecting} .result", "data-status") is None
                still = await http.get(0, f"/funded-accounts/{acct}/withdrawals", owner)
                assert {w["id"]: w["status"] for w in still.body["withdrawals"]}[rid] == "pending"
                await admin.fill(f"{rejecting} form.reject input[name=reason]", "  ")
                await admin.click(f"{rejecting} form.reject button[type=submit]")
                await admin.wait_for_selector(
                    f"{rejecting} .result[data-status='invalid_reason']", timeout=10_000
                )  # white space only: refused by the server, and the buttons work again
                await admin.fill(
                    f"{rejecting} form.reject input[name=reason]", "payout details unverified"
                )
                await admin.click(f"{rejecting} form.reject button[type=submit]")
                await admin.wait_for_selector(
                    f"{rejecting} .result[data-status='rejected']", timeout=25_000
                )
                await admin.screenshot(path=str(tmp_path / "admin-rejected.png"), full_page=True)
            finally:
                await browser.close()
        answer = await http.get(0, f"/funded-accounts/{acct}/withdrawals", owner)
        statuses = {w["id"]: w["status"] for w in answer.body["withdrawals"]}
        assert statuses[wid] == "completed" and statuses[rid] == "rejected"
        assert sorted(statuses.values()) == ["completed", "completed", "rejected"]
        rejected = next(w for w in answer.body["withdrawals"] if w["id"] == rid)
        assert rejected["rejection_reason"] == "payout details unverified"
    shots = ("trader.png", "trader-withdrawn.png", "admin.png", "admin-approved.png")
    for name in (*shots, "admin-rejected.png"):
        assert (tmp_path / name).stat().st_size > 1000


LOCK_TIER = "funded-50k-eod-trailing-soft-daily-chicago"  # soft daily loss 1,000.00 at 17:00
LOCKED_TRADER = "usr_browser_lock"


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_the_trader_page_shows_the_day_countdown_and_the_soft_lock(
    workers: tuple[str, list[Worker]], kafka: Kafka, tmp_path: Path
) -> None:
    """A rule-pack account traded now: the page counts down to the day's reset every second,
    and a daily loss past its amount shows the lock (new positions refused until the reset)
    within a second of the trade's publish, the account still active."""
    from playwright.async_api import async_playwright

    executable = chromium()
    _, ws = workers
    async with Http(ws) as http:
        await http.wait_healthy()
        asm = s.uid("asm")
        started = datetime.now(UTC) - timedelta(minutes=1)
        activation = {**s.assessment(asm, LOCKED_TRADER, LOCK_TIER), "completed_at": _iso(started)}
        await kafka.send("assessment.completed", asm, activation)
        acct = s.account_of(asm)
        owner = auth(LOCKED_TRADER)
        first = await http.account_when(0, acct, owner, lambda a: True, timeout=90)
        resets_at = datetime.fromisoformat(first["trading_day"]["resets_at"])
        if resets_at - datetime.now(UTC) < timedelta(seconds=90):
            pytest.skip("within 90 s of the tier's daily reset: the lock would end mid-test")
        await kafka.send(
            "trades", acct, {**s.opened(acct, "p-1", "2000.00"), "occurred_at": _iso(s.now())}
        )
        await http.account_when(0, acct, owner, lambda a: len(a["positions"]) == 1)
        await listed(http, owner, acct)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, headless=True)
            try:
                page = await signed_in(browser, http.url(0, "/app/"), LOCKED_TRADER)
                card = f"article[data-account='{acct}']"
                day = f"{card} .day"
                daily = f"{card} .gauge[data-rule='daily_loss']"
                await page.wait_for_selector(f"{daily}[data-status='safe']", timeout=15_000)
                await page.wait_for_selector(f"{card} .feed[data-state='live']", timeout=15_000)
                await page.wait_for_selector(f"{day}[data-locked='false']", timeout=5_000)
                before = await page.text_content(day)
                assert before is not None and "resets in" in before, before
                await asyncio.sleep(1.5)
                after = await page.text_content(day)
                assert after != before, (before, after)  # the countdown ticks every second

                sent = time.monotonic()
                loss = {**s.updated(acct, "p-1", "-1200.00"), "occurred_at": _iso(s.now())}
                await kafka.send("trades", acct, loss)
                await page.wait_for_selector(f"{day}[data-locked='true']", timeout=1_000)
                locked_after = time.monotonic() - sent
                assert locked_after <= 1.0, locked_after
                await page.wait_for_selector(f"{daily}[data-status='violation']", timeout=1_000)
                badge = await page.text_content(f"{card} .acct-status")
                assert badge == "locked", badge
                text = await page.text_content(day)
                assert text is not None and "new positions locked until" in text, text
                await page.screenshot(path=str(tmp_path / "trader-locked.png"), full_page=True)
            finally:
                await browser.close()
        detail = (await http.get(1, f"/funded-accounts/{acct}", owner)).body
        assert detail["status"] == "active"
        assert detail["trading_day"]["locked_until"] == first["trading_day"]["resets_at"]
    assert (tmp_path / "trader-locked.png").stat().st_size > 1000
