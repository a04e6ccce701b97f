"""The Pulumi CLI commands ``./ms5 rollback`` runs, answered from an :class:`EngineRehearsal`.

This machine has no Pulumi CLI. :class:`PulumiCliStandIn` is a ``Runner`` for
:func:`ms5_components.rollback.main` that answers exactly these argv, in the CLI's own shapes:

- ``pulumi stack export --stack S``: an untyped deployment of version 3 (``apitype.UntypedDeployment``
  holding a ``DeploymentV3``): manifest, secrets provider, and one ``ResourceV3`` per resource
  of the rehearsal's state (urn, custom, id, type, inputs, outputs, parent), the stack resource
  first; secret values as the CLI exports them without ``--show-secrets`` (the secret signature
  and a ciphertext);
- ``pulumi config --stack S --json``: ``listConfig``'s JSON, the stack file's values over the
  project's defaults: ``{"ms5:key": {"value": "...", "secret": false}}``, an object value also
  as ``objectValue``, a secret one as ``{"secret": true}`` (no value);
- ``pulumi config set --stack S ms5:key VALUE``: the value (a string, as the CLI stores it)
  into the stack file and the rehearsal's config;
- ``pulumi up --stack S --yes --skip-preview``: ``rehearsal.up()``; a failed up fails the command
  the way :func:`ms5_components.rollback._run` reports a non-zero exit.

The restore command (``python -m ms5_components.backups.restore S BACKUP --force``) runs for real,
as a subprocess in the project directory (it reads ``Pulumi.<S>.yaml`` there, kept by this
stand-in like the CLI keeps it). Any other argv fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from driver import EngineRehearsal
from harness import DYNAMIC_PREFIX, ROOT, SECRET_SIG, SECRET_VALUE
from ms5_components import rollback
from ms5_components.errors import RollbackError
from ms5_components.stack_files import config_string, project_defaults, read_stack_config
from rehearsal import RehearsalError, RehearsalRun

SECRET_PROPERTIES = frozenset({"dsn", "password", "grafanaPassword", "envs", "uploads", "result"})
"""Properties the program makes secret (DSNs, passwords, container envs and uploads, generated
passwords): exported as ciphertext."""


def is_secret_key(key: str) -> bool:
    """The rehearsal's rule for secret config keys (``Rehearsal._run``)."""
    return key.endswith(("Password", "password"))


def _ciphertext(value: object) -> dict[str, str]:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()
    return {SECRET_SIG: SECRET_VALUE, "ciphertext": "v1:" + base64.b64encode(digest).decode()}


def _exported(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_ciphertext(v) if k in SECRET_PROPERTIES else v) for k, v in props.items()}


@dataclass
class PulumiCliStandIn:
    """A ``Runner`` standing in for the Pulumi CLI of one stack (see the module docstring)."""

    rehearsal: EngineRehearsal
    project_dir: Path
    """Where ``Pulumi.<stack>.yaml`` is kept (the restore command reads it there)."""
    base_stack: str = "staging"
    """The committed stack file the rehearsal's config is merged over."""
    calls: list[list[str]] = field(default_factory=list)
    ups: list[RehearsalRun] = field(default_factory=list)
    last_exports: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.write_stack_file()

    @property
    def stack(self) -> str:
        return self.rehearsal.stack_name

    # ---- the stack file ---------------------------------------------------------------------

    def stack_values(self) -> dict[str, object]:
        """The stack file's ``config:`` as the CLI keeps it (secrets as ``secure:`` values)."""
        values: dict[str, object] = dict(read_stack_config(ROOT / f"Pulumi.{self.base_stack}.yaml"))
        values.update(self.rehearsal.config)
        return {
            key: ({"secure": _ciphertext(value)["ciphertext"]} if is_secret_key(key) else value)
            for key, value in sorted(values.items())
        }

    @property
    def stack_file(self) -> Path:
        return self.project_dir / f"Pulumi.{self.stack}.yaml"

    def write_stack_file(self) -> None:
        self.stack_file.write_text(
            yaml.safe_dump({"config": self.stack_values()}, sort_keys=True), encoding="utf-8"
        )

    # ---- the commands -----------------------------------------------------------------------

    def __call__(self, argv: Sequence[str]) -> str:
        argv = list(argv)
        self.calls.append(argv)
        stack = self.stack
        if argv == ["pulumi", "stack", "export", "--stack", stack]:
            return json.dumps(self.export(), sort_keys=True)
        if argv == ["pulumi", "config", "--stack", stack, "--json"]:
            return json.dumps(self.config_json(), sort_keys=True)
        if (
            len(argv) == 7
            and argv[:5] == ["pulumi", "config", "set", "--stack", stack]
            and argv[5].startswith("ms5:")
        ):
            self.rehearsal.config[argv[5]] = argv[6]
            self.write_stack_file()
            return ""
        if argv == ["pulumi", "up", "--stack", stack, "--yes", "--skip-preview"]:
            return self.up()
        restore = rollback.default_restore_command()
        if (
            restore is not None
            and len(argv) == len(restore) + 3
            and argv[: len(restore)] == restore
            and argv[len(restore)] == stack
            and argv[-1] == "--force"
        ):
            return rollback._run(argv)
        pytest.fail(f"the rollback ran a command the Pulumi CLI stand-in does not answer: {argv}")

    def up(self) -> str:
        try:
            run = self.rehearsal.up()
        except RehearsalError as exc:
            raise RollbackError(
                f"`pulumi up --stack {self.stack} ...` failed (exit 255): {exc}"
            ) from None
        self.ups.append(run)
        self.last_exports = dict(run.program.exports)
        changed = [r.name for r in run.results if r.op not in ("same", "stand-in")]
        return f"Resources: {len(changed)} changed\n"

    def export(self) -> dict[str, Any]:
        """``pulumi stack export``: the rehearsal's state as an untyped deployment, version 3."""
        stack_urn = f"urn:pulumi:{self.stack}::{self.rehearsal.project}::pulumi:pulumi:Stack::"
        stack_urn += f"{self.rehearsal.project}-{self.stack}"
        resources: list[dict[str, Any]] = [
            {
                "urn": stack_urn,
                "custom": False,
                "type": "pulumi:pulumi:Stack",
                "outputs": _exported(self.last_exports),
            }
        ]
        for urn, entry in self.rehearsal.state.resources.items():
            custom = entry.type.startswith(
                (DYNAMIC_PREFIX, "docker:", "random:", "command:", "pulumi:providers:")
            )
            resource: dict[str, Any] = {
                "urn": urn,
                "custom": custom,
                "type": entry.type,
                "parent": stack_urn,
            }
            if custom:
                resource["id"] = entry.id
            if entry.inputs:
                resource["inputs"] = _exported(entry.inputs)
            if entry.outputs:
                resource["outputs"] = _exported(entry.outputs)
            resources.append(resource)
        return {
            "version": 3,
            "deployment": {
                "manifest": {
                    "time": "2026-12-02T00:00:00Z",
                    "magic": "",
                    "version": "v3.200.0",
                },
                "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:stand-in"}},
                "resources": resources,
            },
        }

    def config_json(self) -> dict[str, dict[str, Any]]:
        """``pulumi config --json``: the stack file's values over the project's defaults."""
        out: dict[str, dict[str, Any]] = {}
        for key, text in project_defaults(ROOT).items():
            out[key] = _config_entry(_default_value(text))
        for key, value in self.stack_values().items():
            out[key] = {"secret": True} if is_secret_key(key) else _config_entry(value)
        return dict(sorted(out.items()))


def _default_value(text: str) -> object:
    """A project default as the CLI holds it: an object when it is one, else its text."""
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _config_entry(value: object) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": config_string(value), "secret": False}
    if isinstance(value, list | dict):
        entry["objectValue"] = value
    return entry
