"""The trader and admin pages in a real browser: Debian's headless Chromium driven by
Playwright's Python package (pointed at that binary; no browser download), against two real
workers. Screenshots of each page go to the test's output folder (`tmp_path`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
        # The list of accounts comes from PostgreSQL: wait until the sink has the account.
        await http.account_when(0, acct, owner, lambda a: True)  # (detail is read at the owner)
        for _ in range(100):
            listed = await http.get(1, "/funded-accounts", owner)
            if any(x["id"] == acct for x in listed.body["funded_accounts"]):
                break
            await asyncio.sleep(0.2)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, headless=True)
            try:
                page = await browser.new_page()
                base = http.url(1, "")
                await page.goto(base + "/app/")
                await page.fill("#token", token(TRADER))
                await page.click("#signin button[type=submit]")
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
                big = await http.post(
                    0,
                    f"/funded-accounts/{acct}/withdraw",
                    {
                        "amount": "1500.00",
                        "payment_method": "stripe_connect",
                        "destination": "acct_1Browser",
                    },
                    owner,
                )
                assert big.status == 201 and big.body["withdrawal"]["status"] == "pending"
                wid = big.body["withdrawal"]["id"]
                admin = await browser.new_page()
                await admin.goto(http.url(0, "/app/admin"))
                await admin.fill("#token", token("adm_browser", ["admin"]))
                await admin.click("#signin button[type=submit]")
                pending = f"article[data-withdrawal='{wid}']"
                await admin.wait_for_selector(pending, timeout=20_000)
                await admin.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
                await admin.click(f"{pending} button.approve")
                await admin.wait_for_selector(
                    f"{pending} .result[data-status='completed']", timeout=25_000
                )
                await admin.screenshot(path=str(tmp_path / "admin-approved.png"), full_page=True)
            finally:
                await browser.close()
        answer = await http.get(0, f"/funded-accounts/{acct}/withdrawals", owner)
        statuses = {w["id"]: w["status"] for w in answer.body["withdrawals"]}
        assert statuses[wid] == "completed"
        assert sorted(statuses.values()) == ["completed", "completed"]
    for name in ("trader.png", "trader-withdrawn.png", "admin.png", "admin-approved.png"):
        assert (tmp_path / name).stat().st_size > 1000
