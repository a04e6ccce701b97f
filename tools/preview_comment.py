"""Turn a ``pulumi preview --policy-pack`` output into a pull-request comment.

    uv run python tools/preview_comment.py STACK OUTCOME PREVIEW_TEXT_FILE > comment.md

The comment starts with the summary a reviewer needs (did the preview pass, how many resources
change, each policy violation on one line with its level and policy) and folds the full preview
into a ``<details>`` block. The preview text is what the CLI printed: it never contains a secret's
value (the CLI masks secrets, the pack's messages never echo values).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_VIOLATION = re.compile(r"\[(mandatory|advisory)\]\s+(?:\S+\s+v[\d.]+\s+)?([a-z0-9][a-z0-9-]+)(.*)")
_CHANGE = re.compile(r"^\s*([+~\-]|\+-|-\+)?\s*(\d+)\s+(to \w+|unchanged)\s*$")


@dataclass(frozen=True)
class Summary:
    violations: list[tuple[str, str, str]]
    """(level, policy, what) in the order printed."""
    changes: list[str]
    """Lines of the ``Resources:`` block, e.g. ``+ 27 to create``."""


def summarize(text: str) -> Summary:
    """The policy violations and resource changes of a preview's output."""
    clean = _ANSI.sub("", text)
    violations: list[tuple[str, str, str]] = []
    changes: list[str] = []
    in_resources = False
    for line in clean.splitlines():
        match = _VIOLATION.search(line)
        if match:
            level, policy, rest = match.groups()
            violations.append((level, policy, rest.strip().strip("()")))
        if line.strip() == "Resources:":
            in_resources = True
            continue
        if in_resources:
            if _CHANGE.match(line):
                changes.append(line.strip())
            elif line.strip():
                in_resources = False
    return Summary(violations=violations, changes=changes)


def comment(stack: str, outcome: str, text: str) -> str:
    """Markdown: the summary first, the whole preview folded."""
    summary = summarize(text)
    mandatory = sum(1 for level, _, _ in summary.violations if level == "mandatory")
    advisory = len(summary.violations) - mandatory
    ok = outcome == "success"
    lines = [
        f"### `pulumi preview` of **{stack}** with the policy pack: "
        + ("passed" if ok else "**failed**"),
        "",
        f"- policy violations: {mandatory} mandatory, {advisory} advisory",
        "- resources: " + (", ".join(summary.changes) if summary.changes else "no summary printed"),
    ]
    for level, policy, what in summary.violations:
        lines.append(f"  - `[{level}]` **{policy}** {what}".rstrip())
    body = _ANSI.sub("", text).replace("```", "'''")
    lines += [
        "",
        "<details><summary>full preview</summary>",
        "",
        "```",
        body.rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    stack, outcome, path = argv
    sys.stdout.write(comment(stack, outcome, Path(path).read_text(errors="replace")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
