"""The dashboard's task detail shows the workflow the task is a step of, in a real Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from qsup import chain, group, step
from tests import tasks
from tests.e2e.test_dashboard_browser import TOKEN, page, server, sync_api  # noqa: F401 - fixtures
from tests.servers import Server


@pytest.mark.timeout(60)
def test_a_steps_detail_lists_its_workflow(
    server: Server,  # noqa: F811
    page: Any,  # noqa: F811
    queue: Any,
    conn: Any,
) -> None:
    expect = sync_api.expect
    wf = queue.add_workflow(
        chain(step(tasks.add, 1, 2), group(step(tasks.add, 10), step(tasks.add, 20)))
    )
    assert wf.result(timeout=20) == [13, 23]
    plain = queue.add_task(tasks.add, 5, 5, connection=conn)
    assert plain.result(timeout=20) == 10
    page.goto(server.url("/"))
    last = str(wf.task_ids[2])
    row = page.locator(f"#tasks tbody tr[data-id='{last}']")
    expect(row).to_have_count(1, timeout=15_000)
    row.click()
    steps = page.locator("#d-wf-steps li")
    expect(page.locator("#d-workflow")).to_be_visible(timeout=10_000)
    expect(page.locator("#d-wf-title")).to_contain_text("[completed]")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_contain_text("0  tests.tasks:add  [completed]")
    expect(steps.nth(2)).to_contain_text("1.1  tests.tasks:add  [completed]")
    expect(steps.nth(2)).to_have_class("current")
    steps.nth(0).click()  # a step opens its own detail
    expect(page.locator("#d-id")).to_have_text(str(wf.task_ids[0]))
    page.locator(f"#tasks tbody tr[data-id='{plain.task_id}']").click()
    expect(page.locator("#d-id")).to_have_text(str(plain.task_id))
    expect(page.locator("#d-workflow")).to_be_hidden()  # a plain task has none


@pytest.mark.timeout(60)
def test_a_workflow_is_cancelled_from_a_steps_detail(
    server: Server,  # noqa: F811
    page: Any,  # noqa: F811
    queue: Any,
    conn: Any,
    tmp_path: Any,
) -> None:
    expect = sync_api.expect
    wf = queue.add_workflow(
        chain(step(tasks.add, 1, 2), step(tasks.sleep_then_return, 60).ignore_result(),
              step(tasks.add, 3, 4).ignore_result())
    )  # fmt: skip
    page.goto(server.url("/"))
    row = page.locator(f"#tasks tbody tr[data-id='{wf.task_ids[2]}']")
    expect(row).to_have_count(1, timeout=15_000)
    row.click()
    expect(page.locator("#d-workflow")).to_be_visible(timeout=10_000)
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.click("#d-wf-cancel")
    expect(page.locator("#d-wf-msg")).to_have_text("cancelled", timeout=10_000)
    expect(page.locator("#d-wf-title")).to_contain_text("[cancelled]", timeout=10_000)
    expect(page.locator("#d-wf-steps li").nth(2)).to_contain_text("[cancelled]")
