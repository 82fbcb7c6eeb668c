"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) while a
real ``qsup serve`` runs tasks: counts change, hostile text stays text, a failed task is opened
and retried with the token through the UI, and a screenshot is saved."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import tasks
from tests.conftest import ROOT, wait_for
from tests.integration.test_http import HttpServer

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-test-token"
HOSTILE = "<script>alert(1)</script>"
ARTIFACT = ROOT / "artifacts" / "dashboard.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A missing browser fails the run, never skips it silently; skipping is a choice said out loud.
if os.environ.get("QSUP_SKIP_BROWSER") == "1":
    pytest.skip("QSUP_SKIP_BROWSER=1", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.fail(
        f"{CHROMIUM} is missing: apt-get install -y chromium "
        "(or set QSUP_SKIP_BROWSER=1 to skip the browser test)",
        pytrace=False,
    )
try:
    from playwright import sync_api
except ImportError:
    pytest.fail(
        'playwright is missing: pip install -e ".[dev]" -c requirements/dev.lock', pytrace=False
    )


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[HttpServer]:
    srv = HttpServer(db_url, tmp_path / "serve.log", workers=1, token=TOKEN)
    try:

        def healthy() -> bool:
            try:
                return httpx.get(srv.url("/health/queue"), timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, interval=0.1, what="a healthy qsup serve")
        srv.remember_children()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    profile = tmp_path / "chromium-profile"  # fresh for this test
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def card(page: Any, state: str) -> Any:
    return page.locator(f"#states .card.state-{state} b")


def test_dashboard_in_chromium(
    server: HttpServer, page: Any, queue: Any, conn: Any, tmp_path: Path
) -> None:
    # Playwright's sync API leaves an event loop running in this thread, where add_task would
    # insert in the background; pass our connection so each insert commits before it returns.
    expect = sync_api.expect
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(server.url("/"))
    expect(page.locator("#health")).to_contain_text("healthy", timeout=15_000)
    expect(page.locator("#servers tbody tr")).to_have_count(1)
    expect(card(page, "completed")).to_have_text("0")

    # Counts change while the page polls.
    refs = [queue.add_task(tasks.add, i, i, connection=conn) for i in range(3)]
    assert [r.result(timeout=20) for r in refs] == [0, 2, 4]
    expect(card(page, "completed")).to_have_text("3", timeout=10_000)
    expect(page.locator("#tasks tbody tr")).to_have_count(3)

    # A failing task whose argument is markup: shown as text, never run as script.
    bad = queue.add_task(tasks.always_fail, HOSTILE, _max_retries=0, connection=conn)
    wait_for(
        lambda: httpx.get(server.url(f"/api/tasks/{bad.task_id}")).json()["state"] == "failed",
        what="the hostile task to fail",
    )
    expect(card(page, "failed")).to_have_text("1", timeout=10_000)
    row = page.locator("#tasks tbody tr", has_text="always_fail")
    expect(row).to_have_count(1)
    row.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#d-id")).to_have_text(str(bad.task_id))
    expect(page.locator("#d-fields")).to_contain_text(HOSTILE)  # the literal text is visible
    expect(page.locator("#d-result")).to_contain_text("wrong arguments for tests.tasks:always_fail")
    assert page.locator("script").count() == 1  # only static/app.js
    assert dialogs == [] and errors == []
    page.screenshot(path=str(tmp_path / "failed-task.png"), full_page=True)

    # Retry through the UI: a wrong token is refused, the right one works.
    page.fill("#token", "wrong")
    page.click("#d-retry")
    expect(page.locator("#d-msg")).to_contain_text("missing or wrong bearer token")
    page.fill("#token", TOKEN)
    page.click("#d-retry")
    expect(page.locator("#d-msg")).to_have_text("retry: done")

    logs = httpx.get(server.url(f"/api/tasks/{bad.task_id}/logs"), timeout=5).json()["logs"]
    assert [log["type"] for log in logs].count("retry") == 1
    assert "retried by operator" in next(log["message"] for log in logs if log["type"] == "retry")
    # The worker runs it again; it fails again with a fresh attempt.
    wait_for(
        lambda: httpx.get(server.url(f"/api/tasks/{bad.task_id}")).json()["state"] == "failed",
        what="the retried task to run again",
    )
    expect(page.locator("#d-logs")).to_contain_text("retried by operator", timeout=10_000)

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
    assert dialogs == [] and errors == []
