"""Leaves a file at $QSUP_TEST_IMPORT_MARKER when imported: proof that a worker imported it."""

from __future__ import annotations

import os
from pathlib import Path

Path(os.environ["QSUP_TEST_IMPORT_MARKER"]).touch()


def run() -> str:
    return "ran"
