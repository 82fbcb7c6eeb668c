"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) while a
real ``qsup serve`` runs tasks: counts change, hostile text stays text, a failed task is opened
and retried with the token through the UI in a closable side panel, the sparkline is labelled,
ids are told apart by their last group, stopped servers are listed apart, and screenshots are
saved."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import tasks
from tests.conftest import wait_for
from tests.e2e.test_malformed_rows import insert_raw
from tests.servers import ROOT, Server

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
def server(start_server: Any) -> Server:
    srv = start_server("--workers", "1", env={"QSUP_ADMIN_TOKEN": TOKEN}, http=True)

    def healthy() -> bool:
        try:
            return httpx.get(srv.url("/health/queue"), timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, interval=0.1, what="a healthy qsup serve")
    return srv


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
    server: Server, page: Any, queue: Any, conn: Any, tmp_path: Path, start_server: Any
) -> None:
    # Playwright's sync API leaves an event loop running in this thread, where add_task would
    # insert in the background; pass our connection so each insert commits before it returns.
    expect = sync_api.expect
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    workflow_requests: list[str] = []

    def requested(request: Any) -> None:
        if "/api/workflows/" in request.url:
            workflow_requests.append(request.url)

    page.on("request", requested)

    page.goto(server.url("/"))
    expect(page.locator("#health")).to_contain_text("healthy", timeout=15_000)
    expect(page.locator("#servers tbody tr")).to_have_count(1)
    expect(card(page, "completed")).to_have_text("0")

    # Counts change while the page polls.
    refs = [queue.add_task(tasks.add, i, i, connection=conn) for i in range(3)]
    assert [r.result(timeout=20) for r in refs] == [0, 2, 4]
    expect(card(page, "completed")).to_have_text("3", timeout=10_000)
    expect(page.locator("#tasks tbody tr")).to_have_count(3)

    # Ids shown by their random last group (the first 8 digits are the same within a minute),
    # the full id on hover.
    ids = page.locator("#tasks tbody td.id")
    shown = {ids.nth(i).text_content(): ids.nth(i).get_attribute("title") for i in range(3)}
    assert shown == {str(r.task_id).split("-")[-1]: str(r.task_id) for r in refs}

    # The sparkline says what it plots: units, span, the peak and the current minute.
    expect(page.locator(".throughput figcaption")).to_contain_text("tasks finished per minute")
    expect(page.locator("#spark-total")).to_have_text("3 in 30 min")
    expect(page.locator("#spark-max")).to_have_text(re.compile(r"^[1-3]/min$"))
    expect(page.locator("#spark-now")).to_have_text(re.compile(r"^this minute: [0-3]$"))
    expect(page.locator(".spark-x")).to_contain_text("30 min ago")
    expect(page.locator(".spark-x")).to_contain_text("now")

    # A failing task whose argument is markup: shown as text, never run as script.
    # Written by hand, as enqueue refuses a call that does not bind: the worker's check words it.
    bad_id = insert_raw(conn, "tests.tasks:always_fail", json.dumps([HOSTILE]))
    wait_for(
        lambda: httpx.get(server.url(f"/api/tasks/{bad_id}")).json()["state"] == "failed",
        what="the hostile task to fail",
    )
    expect(card(page, "failed")).to_have_text("1", timeout=10_000)
    row = page.locator("#tasks tbody tr", has_text="always_fail")
    expect(row).to_have_count(1)
    row.click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator("#d-id")).to_have_text(str(bad_id))
    # Beside the list, in view, and the opened row marked; the list is not hidden under it.
    expect(row).to_have_class(re.compile(r"\bselected\b"))
    panel, cells = detail.bounding_box(), row.bounding_box()
    assert panel["y"] <= 1 and panel["height"] >= 900, panel  # the viewport's full height
    assert cells["x"] + cells["width"] <= panel["x"] + 1, (cells, panel)
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

    logs = httpx.get(server.url(f"/api/tasks/{bad_id}/logs"), timeout=5).json()["logs"]
    assert [log["type"] for log in logs].count("retry") == 1
    assert "retried by operator" in next(log["message"] for log in logs if log["type"] == "retry")
    # The worker runs it again; it fails again with a fresh attempt.
    wait_for(
        lambda: httpx.get(server.url(f"/api/tasks/{bad_id}")).json()["state"] == "failed",
        what="the retried task to run again",
    )
    expect(page.locator("#d-logs")).to_contain_text("retried by operator", timeout=10_000)
    # a plain task's panel, refreshed every 2 s, never asks for a workflow (each was a 404)
    assert workflow_requests == []

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)

    # The panel closes with its button and with Escape; the row is no longer marked.
    page.click("#d-close")
    expect(detail).to_be_hidden()
    expect(page.locator("#tasks tr.selected")).to_have_count(0)
    row.click()
    expect(detail).to_be_visible()
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()

    # A server that stopped is listed apart from the live one, dimmed, with when it stopped.
    other = start_server("--workers", "1")
    expect(page.locator("#servers tbody tr")).to_have_count(2, timeout=10_000)
    other.signal(signal.SIGTERM)
    assert other.wait(30) == 0
    expect(page.locator("#servers tbody tr")).to_have_count(1, timeout=10_000)
    stopped = page.locator("#stopped-servers tbody tr.stopped")
    expect(stopped).to_have_count(1)
    expect(stopped).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    assert stopped.evaluate("e => getComputedStyle(e.closest('table')).color") != (
        page.locator("#servers").evaluate("e => getComputedStyle(e).color")
    )
    page.screenshot(path=str(tmp_path / "stopped-server.png"), full_page=True)
    shutil.copyfile(tmp_path / "stopped-server.png", ARTIFACT.with_name("dashboard-servers.png"))
    assert dialogs == [] and errors == []
