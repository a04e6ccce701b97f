"""docs/operations.md stays true: its generated sections are current, and every command,
setting, stack output, file and history column it names exists."""

from __future__ import annotations

import inspect
import re
import sys

import pytest

from harness import ROOT, run_program
from ms5_components.migrations import runner
from ms5_components.settings import SPECS
from stacks import overrides_for

sys.path.insert(0, str(ROOT / "tools"))
import operations_doc

DOC = ROOT / "docs" / "operations.md"
TEXT = DOC.read_text()


def test_generated_sections_are_current() -> None:
    assert operations_doc.render(TEXT) == TEXT, (
        "docs/operations.md is stale: run uv run python tools/operations_doc.py"
    )


def test_the_readme_links_the_operations_doc() -> None:
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()


def test_every_ms5_subcommand_named_exists() -> None:
    script = (ROOT / "ms5").read_text()
    case = script[script.index('case "${1:-}" in') :]
    known = set(re.findall(r"^  ([a-z-]+)\) shift;", case, re.M))
    named = set(re.findall(r"\./ms5 ([a-z-]+)", TEXT))
    assert named, "the doc names no ./ms5 command"
    assert named <= known, sorted(named - known)


def test_every_setting_named_exists() -> None:
    keys = {spec.key for spec in SPECS}
    named = set(re.findall(r"(?<![/\w])ms5:([a-z][a-zA-Z]+)\b(?!:)", TEXT))
    assert len(named) > 10
    assert named <= keys, sorted(named - keys)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_stack_output_named_exists(stack: str) -> None:
    exports = set(run_program(stack, overrides_for(stack)).exports)
    named = set(
        re.findall(
            r"pulumi stack output(?: --show-secrets)?(?: --stack [\w-]+)?(?: --show-secrets)? (\w+)",
            TEXT,
        )
    )
    assert {"dbDsn", "dbContainer", "schemaVersion"} <= named
    assert named <= exports, sorted(named - exports)


def test_every_file_named_exists() -> None:
    paths = set(re.findall(r"`((?:docs|tools|tests|components|migrations)/[\w./-]+)`", TEXT))
    links = {f"docs/{m}" for m in re.findall(r"\]\(([\w.-]+\.md)\)", TEXT)}
    assert "tools/operations_doc.py" in paths and links
    missing = sorted(p for p in paths | links if not (ROOT / p).exists())
    assert not missing, missing


def test_the_history_table_and_columns_named_exist() -> None:
    assert f"{runner.HISTORY_SCHEMA}.{runner.HISTORY_TABLE}" in TEXT
    ddl = inspect.getsource(runner._create_history_sql)
    for column in ("version", "description", "outcome", "applied_at", "duration_ms", "notes"):
        assert re.search(rf"\b{column}\s+\w", ddl), column
        assert column in TEXT


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_container_is_deleted_before_its_replacement(stack: str) -> None:
    # Each container has a fixed name and published ports: a replacement created first would be
    # refused by Docker (name in use), so the doc's cost table holds for every container.
    containers = run_program(stack, overrides_for(stack)).by_type(operations_doc.CONTAINER)
    assert len(containers) >= 5
    assert [c.urn for c in containers if not c.delete_before_replace] == []


def test_an_ignored_input_is_not_a_replacement() -> None:
    """The engine hands the provider the old value of an ``ignoreChanges`` path: a new password
    changes the database's password-file upload, which the program ignores, so the server is not
    replaced (the real-engine rotation test sees the same); the backup service, whose upload is
    not ignored, is."""
    base = operations_doc._evaluate({})
    changed = operations_doc._evaluate({"ms5:dbPassword": "operations-doc-password-0009"})
    containers, _others, ignored_only = operations_doc._diff(base, changed)
    assert "timescaledb" not in containers
    assert ignored_only == {"timescaledb"}
    assert "uploads" in containers["backups-backup-scheduler"]
