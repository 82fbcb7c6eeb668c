"""The recipes of examples/workflows/, each against a real ``qsup serve``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
from examples.workflows import batch, circuit_breaker, conditional, idempotent, report, saga

from qsup import TaskFailed
from tests.conftest import wait_for
from tests.servers import ROOT

MODULES = ("report", "batch", "conditional", "saga", "circuit_breaker", "idempotent")


@pytest.fixture
def recipes(start_server, tmp_path, monkeypatch):
    env = {
        "SAGA_LEDGER": str(tmp_path / "ledger.jsonl"),
        "BREAKER_STATE": str(tmp_path / "breaker.json"),
        "PROVIDER_DIR": str(tmp_path / "provider"),
        "QUEUE_RETRY_BACKOFF_BASE": "0.05",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    imports = [arg for m in MODULES for arg in ("--import", f"examples.workflows.{m}")]
    start_server("--workers", "2", *imports, env=env)
    return tmp_path


def run_example(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.workflows.{module}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(90)
def test_report_and_batch_run_as_scripts_and_through_the_api(queue, recipes):
    receipt = report.report(queue, "sales", ["a@example.com"]).result(timeout=30)
    assert receipt["to"] == ["a@example.com"]
    assert receipt["document"] == "[pdf] total 200; north: 120; south: 80"
    summary = batch.batch(queue, list(range(10))).result(timeout=30)
    assert summary == {"succeeded": 8, "failed": 2, "total": 10 * sum([0, 1, 2, 3, 5, 6, 7, 8]),
                       "failed_items": [4, 9]}  # fmt: skip
    assert "boss@example.com" in run_example("report")
    printed = ast.literal_eval(run_example("batch"))
    assert (printed["succeeded"], printed["failed"]) == (8, 2)


@pytest.mark.timeout(60)
def test_the_conditional_recipe_takes_the_branch_the_score_chose(queue, recipes):
    risky = conditional.check(queue, "o-1", 2500.0).result(timeout=30)
    safe = conditional.check(queue, "o-2", 10.0).result(timeout=30)
    assert conditional.branch_of(queue, risky).result(timeout=30) == (
        "told fraud-team: o-1 held for review"
    )
    assert conditional.branch_of(queue, safe).result(timeout=30) == "told customer: o-2 approved"


@pytest.mark.timeout(60)
def test_the_saga_refunds_then_releases_once_and_a_double_submit_is_one_saga(queue, recipes):
    order = {"id": "o-9", "items": 1, "amount": 5, "address": None}
    first = saga.checkout(queue, order)
    assert saga.checkout(queue, order).workflow_id == first.workflow_id
    with pytest.raises(TaskFailed, match="has no address"):
        first.result(timeout=30)
    ledger = recipes / "ledger.jsonl"

    def ops() -> list[str]:
        return [json.loads(line)["op"] for line in ledger.read_text().splitlines()]

    wait_for(lambda: len(ops()) >= 4, what="the compensations")
    assert ops() == ["reserve", "charge", "refund", "release"]
    good = saga.checkout(queue, {**order, "id": "o-10", "address": "1 Main St"})
    assert good.result(timeout=30)["op"] == "ship"


@pytest.mark.timeout(60)
def test_the_circuit_breaker_opens_then_closes_after_a_trial_call(queue, recipes):
    outage = recipes / "outage"
    outage.touch()
    wf = circuit_breaker.priced(queue, 100.0, str(outage))
    state = recipes / "breaker.json"
    wait_for(lambda: circuit_breaker.read_state(state)["opened_at"], what="open")
    outage.unlink()
    assert wf.result(timeout=30) == 108.0
    assert circuit_breaker.read_state(state) == {"failures": 0, "opened_at": None}


@pytest.mark.timeout(90)
def test_the_circuit_breaker_script_opens_its_breaker(queue, recipes):
    """As the README runs it: before, the script's call never failed, so nothing opened."""
    lines = run_example("circuit_breaker").splitlines()
    assert lines == [
        "breaker open after 3 failures; the service is back",
        "108.0",
        "breaker closed: {'failures': 0, 'opened_at': None}",
    ]


@pytest.mark.timeout(60)
def test_idempotent_retries_charge_once(queue, recipes):
    first = idempotent.bill(queue, "inv-7", 42, fail_attempts=2)
    assert idempotent.bill(queue, "inv-7", 42, fail_attempts=2).workflow_id == first.workflow_id
    assert first.result(timeout=30) == "charged 42 once (attempt 3)"
    assert [p.name for p in (recipes / "provider").iterdir()] == ["invoice:inv-7.json"]
