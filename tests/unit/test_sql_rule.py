"""Security rule: SQL lives only in src/qsup/sql/*.sql; no Python string holds a statement, so
none can be built by formatting."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "qsup"
STATEMENT = re.compile(
    r"^\s*(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
    r"|DROP\s+(TABLE|INDEX|DATABASE)|ALTER\s+TABLE|TRUNCATE\s|LISTEN\s|NOTIFY\s|COPY\s)",
    re.IGNORECASE | re.DOTALL,
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):  # f-strings: their literal parts
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            found.append((node.lineno, text))
    return found


def test_no_python_string_in_the_package_is_a_sql_statement():
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {text.strip()[:60]!r}"
        for path in SRC.rglob("*.py")
        for line, text in _strings(ast.parse(path.read_text()))
        if STATEMENT.match(text)
    ]
    assert offenders == []


def test_the_rule_catches_formatted_sql():
    sample = 'q = f"SELECT id FROM queued_tasks WHERE name = {name}"\nr = "DELETE FROM x"'
    assert [t for _, t in _strings(ast.parse(sample)) if STATEMENT.match(t)]
