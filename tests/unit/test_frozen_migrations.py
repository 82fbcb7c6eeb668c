"""Released migrations are history: a database upgraded through them and a new one must hold
the same schema, so a released file never changes (a fix is a new migration). Each landed
migration is frozen here by its SHA-256 (the first 128 bits); a new one may change until it
lands."""

from __future__ import annotations

import hashlib

import pytest

from qsup.sql import migrations

FROZEN = {
    "0001_initial.sql": "91425c412d591b2bca0ccd8ecb8e4e5c",
    "0002_lighter_indexes.sql": "b318ebf8216fef815945c1dffd2fa0ff",
    "0003_server_counters.sql": "5d527b03467f4ff253010d0b6ba0821b",
    "0004_enqueued_counter.sql": "acaeea32d92660d0c83600b75a0ef5c4",
    "0005_lighter_hot_path.sql": "6e8c0cb2148fb5857a8dc7634520268c",
    "0006_vacuum_by_count.sql": "0e07046a0b1afd2e4371e6c849d239f9",
    "0007_workflows.sql": "ca35cc3f517cff9c87113e8aff3e6ba8",
    "0008_flow_control.sql": "2ef04b64aebff4f7209099d7ef4816dc",
    "0009_headers.sql": "a3ef297d191a53e4d87821472fe416a3",
    "0010_accounting.sql": "721eaa6f37c724f7aa81a7c6f3fcf1b0",
    "0011_fleet_declarations.sql": "c4c362f9fed057eff07286ed07105625",
    "0012_unstarted_rescues.sql": "4063a90d40cd8076215f0684b80eb7a1",
    "0013_inside_tasks.sql": "e40e82efda61174bcb980a4bc530c0f3",
    "0014_task_minutes.sql": "babd230f2d5cf156685d71bb826a96e2",
    "0015_functions_as_code.sql": "4bae245777217f6b0877b8e8ec593c62",
}


@pytest.mark.timeout(10)
def test_released_migrations_are_unchanged_and_new_ones_come_after_them():
    found = {name: hashlib.sha256(sql.encode()).hexdigest()[:32] for _, name, sql in migrations()}
    changed = [name for name, digest in FROZEN.items() if found.get(name) != digest]
    assert not changed, f"released migrations edited or removed: {changed}; add a new one"
    newest_frozen = max(int(name.split("_", 1)[0]) for name in FROZEN)
    for version, name, _ in migrations():
        assert name in FROZEN or version > newest_frozen, f"{name} sits among released ones"


@pytest.mark.timeout(10)
def test_migration_versions_are_unique_and_without_gaps():
    versions = [version for version, _, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
