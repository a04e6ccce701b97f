"""Generate the parts of ``docs/operations.md`` that are derived from the program.

    uv run python tools/operations_doc.py          # rewrite the generated sections
    uv run python tools/operations_doc.py --check  # exit 1 when they are stale (a test does this)
    uv run python tools/operations_doc.py --preview [STACK]   # print the preview sample

Two sections:

- **What a setting change does to the containers.** For every ``ms5:`` setting the program is
  evaluated under mocks (``tests/harness.py``) twice for the staging stack: with the committed
  config, and with that one setting changed to another valid value. The Docker containers whose
  inputs differ are classified with the schema of the bridged provider (pulumi-docker 5.2 bridges
  kreuzwerker/terraform-provider-docker 4.x): a changed input that is ``ForceNew`` there replaces
  the container; the few others are updated in place (:data:`IN_PLACE_APPLIED`) or only recorded
  in state (:data:`IN_PLACE_RECORDED_ONLY`).
- **A first ``pulumi preview``.** The resource tree the program registers for a stack with no
  state, printed in the layout of ``pulumi preview`` (every resource is a create).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

DOC = ROOT / "docs" / "operations.md"
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
STACK = "staging"

IN_PLACE_APPLIED: frozenset[str] = frozenset(
    {
        "restart",
        "maxRetryCount",
        "cpuShares",
        "memory",
        "memoryReservation",
        "cpuSet",
        "memorySwap",
        "deviceReadBps",
        "deviceReadIops",
        "deviceWriteBps",
        "deviceWriteIops",
    }
)
"""Container inputs that are not ForceNew and that the provider's update applies to the running
container (``docker update``): ``resourceDockerContainerUpdate`` in
``internal/provider/resource_docker_container_funcs.go``."""

IN_PLACE_RECORDED_ONLY: frozenset[str] = frozenset(
    {
        "attach",
        "containerReadRefreshTimeoutMilliseconds",
        "cpuPeriod",
        "cpuQuota",
        "destroyGraceSeconds",
        "healthcheck",
        "logs",
        "mustRun",
        "removeVolumes",
        "rm",
        "start",
        "tmpfs",
        "wait",
        "waitTimeout",
    }
)
"""Container inputs that are not ForceNew but that the update does not apply to the running
container: the new value is only recorded in state (it takes effect at the next replacement, or
affects only how Pulumi waits or destroys)."""

# Settings whose effect is not a container input change and is described in the doc's text.
NOT_TRIED: Mapping[str, str] = {
    "environment": "changes the rules the settings enforce (production needs digests and data "
    "protection), no container input by itself",
    "migrationsDir": "changes which migration files the MigrationSet applies (only the "
    "`migrations` resource; the files must keep every applied version)",
    "dockerHost": "points the stack at another Docker engine: every Docker resource is created "
    "there (a new, empty data volume) — move data with a backup and restore, never by "
    "changing this",
}

# A valid other value for string and array settings (numbers and booleans are derived).
TRIAL_VALUES: Mapping[str, object] = {
    "bindAddress": "127.0.0.2",
    "dbImage": "timescale/timescaledb:2.19.4-pg17",
    "dbName": "ms5_other",
    "dbSuperuser": "ms5_owner",
    "dbPassword": "operations-doc-password-0001",
    "dbTelemetry": "basic",
    "dbRestartPolicy": "always",
    "dbLogMaxSize": "100m",
    "dbServerSettings": ["work_mem=64MB"],
    "migrationRepair": ["1"],
    "exporterImage": "quay.io/prometheuscommunity/postgres-exporter:v0.17.2",
    "exporterPassword": "operations-doc-password-0002",
    "prometheusImage": "prom/prometheus:v2.53.4",
    "prometheusRetention": "30d",
    "prometheusRetentionSize": "10GB",
    "pushgatewayImage": "prom/pushgateway:v1.11.1",
    "grafanaImage": "grafana/grafana:12.1.2",
    "grafanaAdminUser": "ms5operator",
    "grafanaAdminPassword": "operations-doc-password-0003",
    "grafanaDbPassword": "operations-doc-password-0004",
    "verificationWarnOnly": ["jobs"],
    "verificationRunId": "again-1",
    "verificationBackupSource": "none",
    "benchmarkRunId": "again-1",
    "benchmarkGate": "fail",
    "backupCompression": "zstd:3",
    "backupSchedule": "every 6h",
    "backupLabel": "before-upgrade",
}


@dataclass(frozen=True)
class Effect:
    """What changing one setting does."""

    key: str
    replaced: tuple[str, ...]
    updated: tuple[str, ...]
    recorded: tuple[str, ...]
    others: tuple[str, ...]
    note: str = ""


def _mocks() -> Any:
    from harness import ProgramMocks

    class ImageAwareMocks(ProgramMocks):
        """Image ids that follow the image reference, as a real pull's would."""

        def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
            resource_id, outputs = super().new_resource(args)
            if args.typ == IMAGE:
                digest = hashlib.sha256(str(args.inputs["name"]).encode()).hexdigest()
                repo = str(args.inputs["name"]).split("@")[0].rsplit(":", 1)[0]
                outputs["imageId"] = f"sha256:{digest}"
                outputs["repoDigest"] = f"{repo}@sha256:{digest}"
            return resource_id, outputs

    return ImageAwareMocks()


def _evaluate(overrides: Mapping[str, object]) -> Any:
    from harness import run_program
    from ms5_components.settings import SPECS
    from stacks import overrides_for

    # Secret settings arrive as secrets, as `pulumi config set --secret` makes them.
    secret = tuple(spec.qualified for spec in SPECS if spec.secret and spec.qualified in overrides)
    return run_program(
        STACK, overrides_for(STACK, dict(overrides)), mocks=_mocks(), secret_keys=secret
    )


def _container_label(name: str) -> str:
    return name.removesuffix("-container")


def _trial_value(spec: Any, current: object) -> list[object]:
    if spec.key in TRIAL_VALUES:
        return [TRIAL_VALUES[spec.key]]
    if spec.type == "boolean":
        return [not bool(current)]
    if spec.type == "integer":
        value = int(str(current))
        return [value + 1, value - 1, value * 2]
    raise SystemExit(
        f"tools/operations_doc.py: no trial value for ms5:{spec.key} ({spec.type}); add one to "
        "TRIAL_VALUES (a valid value other than the default)"
    )


def _current(spec: Any) -> object:
    from harness import stack_config
    from stacks import overrides_for

    raw = stack_config(STACK, overrides_for(STACK)).get(spec.qualified)
    if raw is None:
        return spec.default
    if spec.type == "integer":
        return int(raw)
    if spec.type == "boolean":
        return raw.lower() == "true"
    return raw


def _diff(base: Any, changed: Any) -> tuple[dict[str, set[str]], list[str], set[str]]:
    containers: dict[str, set[str]] = {}
    ignored_only: set[str] = set()
    others: list[str] = []
    for urn, reg in base.registrations.items():
        other = changed.registrations.get(urn)
        if other is None:
            if reg.type in (CONTAINER, VOLUME):
                others.append(f"{reg.name} (deleted)")
            continue
        if (reg.protect, reg.retain_on_delete) != (other.protect, other.retain_on_delete):
            others.append(f"{reg.name} (protect/retainOnDelete)")
        # The engine gives the provider the old value of every ignoreChanges path, so a change
        # there is no change at all (the password file the server reads only at first init).
        ignored = set(other.ignore_changes)
        changed_keys = {
            k
            for k in set(reg.inputs) | set(other.inputs)
            if k != "__provider" and reg.inputs.get(k) != other.inputs.get(k)
        }
        keys = changed_keys - ignored
        if reg.type == CONTAINER and changed_keys and not keys:
            ignored_only.add(_container_label(reg.name))
        if not keys:
            continue
        if reg.type == CONTAINER:
            containers[_container_label(reg.name)] = keys
        elif reg.type != IMAGE:
            others.append(reg.name)
    for urn, reg in changed.registrations.items():
        if urn not in base.registrations and reg.type in (CONTAINER, VOLUME):
            others.append(f"{reg.name} (created)")
    return containers, sorted(others), ignored_only


def setting_effects() -> list[Effect]:
    """The effect of changing each setting, derived as the module docstring says."""
    from ms5_components.errors import SettingsErrors
    from ms5_components.settings import SPECS

    base = _evaluate({})
    effects: list[Effect] = []
    for spec in SPECS:
        if spec.key in NOT_TRIED:
            effects.append(Effect(spec.key, (), (), (), (), NOT_TRIED[spec.key]))
            continue
        current = _current(spec)
        changed = None
        errors: list[str] = []
        for value in _trial_value(spec, current):
            try:
                changed = _evaluate({spec.qualified: value})
                break
            except (SettingsErrors, Exception) as exc:  # noqa: BLE001 - try the next value
                errors.append(f"{value!r}: {str(exc).splitlines()[0][:200]}")
        if changed is None:
            raise SystemExit(
                f"tools/operations_doc.py: no valid trial value for ms5:{spec.key}: {errors}"
            )
        containers, others, ignored_only = _diff(base, changed)
        replaced = sorted(
            n for n, keys in containers.items() if keys - IN_PLACE_APPLIED - IN_PLACE_RECORDED_ONLY
        )
        updated = sorted(
            n for n, keys in containers.items() if n not in replaced and keys & IN_PLACE_APPLIED
        )
        recorded = sorted(
            [n for n, keys in containers.items() if n not in replaced and n not in updated]
            + [f"{n} (ignoreChanges: at its next replacement)" for n in ignored_only]
        )
        effects.append(
            Effect(spec.key, tuple(replaced), tuple(updated), tuple(recorded), tuple(others))
        )
    return effects


def container_costs() -> list[tuple[str, str, str]]:
    """Per container: (name, what a replacement costs in availability, what data is kept)."""
    base = _evaluate({})
    rows = []
    for reg in sorted(base.by_type(CONTAINER), key=lambda r: r.name):
        volumes = [str(v["volumeName"]) for v in reg.plain("volumes") or []]
        if reg.delete_before_replace:
            downtime = (
                "down until the new container is up (and healthy, where it has a health "
                "check): the old one is stopped and removed first (delete-before-replace)"
            )
        else:
            downtime = (
                "create-before-delete: the replacement is created while the old container "
                "still holds its name and port, which Docker refuses"
            )
        kept = (
            "kept: " + ", ".join(f"volume `{v}`" for v in volumes)
            if volumes
            else "nothing to keep (stateless)"
        )
        rows.append((_container_label(reg.name), downtime, kept))
    return rows


def _names(items: tuple[str, ...]) -> str:
    return ", ".join(f"`{i}`" for i in items) if items else "—"


def replacement_section() -> str:
    lines = [
        "| setting | containers replaced | updated in place | not applied until replaced | "
        "other resources updated |",
        "|---|---|---|---|---|",
    ]
    for e in setting_effects():
        if e.note:
            lines.append(f"| `ms5:{e.key}` | {e.note} | | | |")
            continue
        lines.append(
            f"| `ms5:{e.key}` | {_names(e.replaced)} | {_names(e.updated)} | "
            f"{_names(e.recorded)} | {_names(e.others)} |"
        )
    lines += ["", "| container (`<stack>-…`) | replacing it costs | data |", "|---|---|---|"]
    for name, downtime, kept in container_costs():
        lines.append(f"| `{name}` | {downtime} | {kept} |")
    return "\n".join(lines)


def preview_text(stack: str = STACK) -> str:
    """A first ``pulumi preview`` of ``stack`` (no state yet): every resource is a create."""
    from harness import run_program
    from stacks import overrides_for

    run = run_program(stack, overrides_for(stack), preview=True)
    root_urn = f"urn:pulumi:{stack}::ms5::pulumi:pulumi:Stack::ms5-{stack}"
    children: dict[str, list[str]] = {}
    for urn in run.order:
        parent = run.registrations[urn].parent or root_urn
        children.setdefault(parent, []).append(urn)
    for urns in children.values():  # registration order varies between runs; names do not
        urns.sort(key=lambda u: run.registrations[u].name)
    rows: list[tuple[str, str, str]] = [("", "pulumi:pulumi:Stack", f"ms5-{stack}")]

    def walk(urn: str, prefix: str) -> None:
        kids = children.get(urn, [])
        for index, child in enumerate(kids):
            last = index == len(kids) - 1
            reg = run.registrations[child]
            rows.append((prefix + ("└─ " if last else "├─ "), reg.type, reg.name))
            walk(child, prefix + ("   " if last else "│  "))

    walk(root_urn, "")
    width = max(len(p) + len(t) for p, t, _ in rows) + 2
    name_width = max(len(n) for _, _, n in rows) + 2
    out = [f"Previewing update ({stack})", "", f"     {'Type':<{width}}{'Name':<{name_width}}Plan"]
    for prefix, type_, name in rows:
        out.append(f" +   {prefix + type_:<{width}}{name:<{name_width}}create")
    full = run_program(stack, overrides_for(stack))
    out += ["", "Outputs:"]
    key_width = max(len(k) for k in full.exports) + 1
    for key in sorted(full.exports):
        shown = "[secret]" if key in full.secret_exports else f"output<{_kind(full.exports[key])}>"
        out.append(f"    {key:<{key_width}}: {shown}")
    out += ["", "Resources:", f"    + {len(rows)} to create"]
    return "\n".join(out)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list"
    return "string"


def preview_section() -> str:
    return "```text\n" + preview_text() + "\n```"


SECTIONS = {"REPLACEMENTS": replacement_section, "PREVIEW": preview_section}


def render(text: str) -> str:
    """``text`` with every generated section replaced by its current content."""
    for name, build in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- BEGIN {name} \(tools/operations_doc.py\) -->\n)(?:.*?\n)?"
            rf"(<!-- END {name} -->)",
            re.S,
        )
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no generated section {name}")
        content = build()
        text = pattern.sub(lambda m, c=content: m.group(1) + c + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--preview", nargs="?", const=STACK, metavar="STACK")
    parser.add_argument("--json", action="store_true", help="print the setting effects as JSON")
    args = parser.parse_args(argv)
    if args.preview:
        print(preview_text(args.preview))
        return 0
    if args.json:
        print(json.dumps([e.__dict__ for e in setting_effects()], indent=2))
        return 0
    current = DOC.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{DOC.relative_to(ROOT)} is stale: run uv run python tools/operations_doc.py")
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
