"""Read Pulumi project and stack files the way the Pulumi CLI reads them.

The CLI parses ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` with Go's ``gopkg.in/yaml.v3``, which
follows YAML 1.2 for plain scalars: only ``true``/``false`` (and their ``True``/``TRUE`` spellings)
are booleans, so ``off``, ``no``, ``yes`` and ``on`` stay strings; ``0o17`` is octal, ``0x1F``
hexadecimal, ``1_000`` is 1000 (underscores are dropped before a number is parsed). PyYAML's
``safe_load`` is YAML 1.1 (``off`` -> False, ``0o17`` a string), so every reader of these files in
this project — the program (it looks at the other stacks' ports), the test harness and
``tools/pin_images.py`` — goes through :func:`load_yaml` here.

:func:`config_string` then renders a value as the CLI hands it to the program in
``PULUMI_CONFIG``: booleans and numbers as JSON text, strings as they are, lists and maps as
compact JSON with sorted keys, a ``secure:`` value as its ciphertext.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PLAIN_TAG = "tag:ms5,2026:plain"
"""Tag given to every untagged plain scalar, resolved by :func:`resolve_plain`."""

_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_TIMESTAMP_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:(?P<sep>[Tt ])(?P<H>[0-9]{1,2}):(?P<M>[0-9]{1,2}):(?P<S>[0-9]{1,2})(?P<frac>\.[0-9]+)?"
    r"(?P<tz>Z|[-+][0-9]{2}:[0-9]{2})?)?"
)
_SPECIAL: dict[str, object] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_INT64 = (-(2**63), 2**64 - 1)


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)`` (then ParseUint): sign, 0x/0o/0b prefixes, a leading 0
    meaning octal."""
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    lowered = digits.lower()
    base = 10
    if lowered.startswith(("0x", "0o", "0b")):
        base, digits = {"x": 16, "o": 8, "b": 2}[lowered[1]], digits[2:]
    elif len(digits) > 1 and digits[0] == "0":
        base, digits = 8, digits[1:]
    if not digits or not all(c in "0123456789abcdef"[:base] for c in digits.lower()):
        return None
    value = sign * int(digits, base)
    return value if _INT64[0] <= value <= _INT64[1] else None


def _timestamp(text: str) -> dt.datetime | None:
    match = _TIMESTAMP_RE.fullmatch(text)
    if not match:
        return None
    parts = match.groupdict()
    # Go's layouts: a "T" date-time carries a zone, a space-separated one does not.
    if parts["sep"] and (parts["sep"] in "Tt") != bool(parts["tz"]):
        return None
    try:
        tz = dt.UTC
        if parts["tz"] and parts["tz"] != "Z":
            hours, minutes = parts["tz"][1:].split(":")
            offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
            tz = dt.timezone(offset if parts["tz"][0] == "+" else -offset)
        micro = int(float(parts["frac"]) * 1_000_000) if parts["frac"] else 0
        return dt.datetime(
            int(parts["y"]),
            int(parts["m"]),
            int(parts["d"]),
            int(parts["H"] or 0),
            int(parts["M"] or 0),
            int(parts["S"] or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        return None


def resolve_plain(text: str) -> object:
    """The value yaml.v3 gives an untagged plain scalar (``resolve`` in its resolve.go)."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    first = text[:1]
    if first == "." and _FLOAT_RE.fullmatch(text):
        return float(text)
    if first.isdigit() or first in "+-":
        stamp = _timestamp(text)
        if stamp is not None:
            return stamp
        plain = text.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return number
        if _FLOAT_RE.fullmatch(plain):
            return float(plain)
    return text


class CliLoader(yaml.SafeLoader):
    """A PyYAML loader whose plain scalars resolve as yaml.v3 resolves them (YAML 1.2 core)."""

    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN_TAG
        if kind is yaml.ScalarNode:
            return "tag:yaml.org,2002:str"
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def _construct_plain(loader: CliLoader, node: yaml.Node) -> object:
    assert isinstance(node, yaml.ScalarNode)
    return resolve_plain(str(loader.construct_scalar(node)))


CliLoader.add_constructor(PLAIN_TAG, _construct_plain)
# The 1.1 implicit resolvers (yes/no/on/off, sexagesimal numbers, ...) never apply.
CliLoader.yaml_implicit_resolvers = {}


def load_yaml(text: str) -> Any:
    """Parse YAML text as the Pulumi CLI does."""
    return yaml.load(text, Loader=CliLoader)  # noqa: S506 (CliLoader is a SafeLoader)


def _go_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} has no JSON form (the Pulumi CLI refuses it too)")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _go_json(value: object) -> str:
    # encoding/json: sorted keys, no spaces, <, > and & escaped.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain_value(value: object) -> object:
    """A value inside a list or map, as encoding/json would see it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dt.datetime):
        return _go_time(value)
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    if isinstance(value, dict):
        return {
            k if isinstance(k, str) else config_string(k): _plain_value(v) for k, v in value.items()
        }
    return value


def _go_time(value: dt.datetime) -> str:
    """Go's ``time.Time.String()``: ``2001-12-14 21:59:43 +0000 UTC``."""
    stamp = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        stamp += f".{value.microsecond:06d}".rstrip("0")
    offset = value.strftime("%z")
    zone = "UTC" if offset == "+0000" else ""
    return f"{stamp} {offset} {zone}".rstrip()


def is_secure(value: object) -> bool:
    """Whether a stack-file value is an encrypted ``secure:`` value."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secure"), str)


def config_string(value: object) -> str:
    """A config value as the CLI puts it in ``PULUMI_CONFIG``."""
    if is_secure(value):
        assert isinstance(value, dict)
        return str(value["secure"])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return _go_time(value)
    return _go_json(_plain_value(value))


def default_string(value: object) -> str:
    """A ``Pulumi.yaml`` default as the CLI merges it (``fmt.Sprintf("%v")`` for scalars)."""
    if isinstance(value, (list, dict)):
        return _go_json(_plain_value(value))
    return config_string(value)


# --------------------------------------------------------------------------------------------------
# Project and stack files
# --------------------------------------------------------------------------------------------------

PROJECT_FILE = "Pulumi.yaml"


def find_project_dir(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds ``Pulumi.yaml``."""
    for directory in (start, *start.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return None


def stack_file(project_dir: Path, stack: str) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def stack_names(project_dir: Path) -> list[str]:
    """The stacks that have a stack file in the project directory, sorted."""
    names = []
    for path in project_dir.glob("Pulumi.*.yaml"):
        name = path.name[len("Pulumi.") : -len(".yaml")]
        if name:
            names.append(name)
    return sorted(names)


def read_stack_config(path: Path) -> dict[str, object]:
    """The ``config:`` mapping of a stack file (keys ``namespace:key``), values as parsed."""
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping at the top level")  # noqa: TRY004
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path.name}: config must be a mapping of key: value")  # noqa: TRY004
    return {str(k): v for k, v in config.items()}


def project_defaults(project_dir: Path) -> dict[str, str]:
    """The defaults ``Pulumi.yaml`` declares, as ``project:key`` -> config string."""
    data = load_yaml((project_dir / PROJECT_FILE).read_text(encoding="utf-8")) or {}
    name = str(data.get("name"))
    out: dict[str, str] = {}
    for key, decl in (data.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            full = str(key) if ":" in str(key) else f"{name}:{key}"
            out[full] = default_string(decl["default"])
    return out


def stack_config_strings(
    project_dir: Path, stack: str, overrides: Mapping[str, object] | None = None
) -> dict[str, str]:
    """What the CLI passes in ``PULUMI_CONFIG`` for ``stack``: project defaults, then the stack
    file, then ``overrides`` (values as in a stack file)."""
    config = project_defaults(project_dir)
    path = stack_file(project_dir, stack)
    if path.exists():
        for key, value in read_stack_config(path).items():
            config[key] = config_string(value)
    for key, value in (overrides or {}).items():
        config[key] = config_string(value)
    return config
