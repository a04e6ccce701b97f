"""The pull-request comment: summary first (outcome, changes, one line per violation), the whole
preview folded underneath."""

from __future__ import annotations

from preview_comment import comment, main, summarize

PREVIEW = """\x1b[1mPreviewing update (production):\x1b[0m
     Type                                  Name                 Plan
 +   pulumi:pulumi:Stack                   ms5-production       create
 +   ├─ docker:index/container:Container   timescaledb-container create

Policies:
    \u274c ms5-timescaledb@v0.2.0 (local: policy)
        - [mandatory]  production-has-backup  (pulumi:pulumi:Stack: ms5-production)
          A production stack takes backups (a Backup resource).
          no Backup resource in a production stack: add the backup component.
        - [advisory]  images-pinned  (docker:index/container:Container: monitoring-grafana-container)
          Images are pinned: never latest or untagged, and by digest in production.

Resources:
    + 27 to create
    ~ 1 to update

```not a fence```
"""


def test_summary_lists_changes_and_each_violation():
    summary = summarize(PREVIEW)
    assert summary.changes == ["+ 27 to create", "~ 1 to update"]
    assert [(lvl, p) for lvl, p, _ in summary.violations] == [
        ("mandatory", "production-has-backup"),
        ("advisory", "images-pinned"),
    ]
    assert summary.violations[0][2] == "pulumi:pulumi:Stack: ms5-production"


def test_comment_puts_the_summary_first_and_folds_the_preview():
    text = comment("production", "failure", PREVIEW)
    head, details = text.split("<details>", 1)
    assert "**production**" in head and "**failed**" in head
    assert "1 mandatory, 1 advisory" in head
    assert "`[mandatory]` **production-has-backup**" in head
    assert "+ 27 to create, ~ 1 to update" in head
    assert "Previewing update (production)" in details and "\x1b" not in text
    assert details.count("```") == 2  # the preview's own backticks cannot close the fence
    assert comment("staging", "success", "Resources:\n    27 unchanged\n").startswith(
        "### `pulumi preview` of **staging** with the policy pack: passed"
    )


def test_usage(capsys):
    assert main([]) == 2
    assert "preview_comment.py STACK OUTCOME" in capsys.readouterr().err
