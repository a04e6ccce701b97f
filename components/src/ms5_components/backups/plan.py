"""When to back up, and what retention keeps (pure: testable without a server).

The same retention rule is implemented by the POSIX script for the scheduler (:mod:`.script`);
the tests run both on the same inventories.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ms5_components.backups.manifest import NAME_RE

State = Literal["verified", "unverified", "temporary"]


@dataclass(frozen=True, kw_only=True)
class BackupEntry:
    """One directory on the backup volume, as ``list`` reports it."""

    name: str
    state: State
    """verified: published with a manifest (verification passed before publishing);
    unverified: a published name without a manifest, or marked as failed later;
    temporary: a ``.tmp-`` leftover."""
    epoch: int
    """Start time (from the name's stamp; 0 when unknown)."""


@dataclass(frozen=True, kw_only=True)
class RetentionPlan:
    keep: tuple[str, ...]
    prune: tuple[str, ...]
    """Published backups to delete (oldest first)."""
    sweep: tuple[str, ...]
    """Temporary leftovers to delete."""


def plan_retention(
    entries: Iterable[BackupEntry], *, keep_count: int, max_age_days: int, now: int
) -> RetentionPlan:
    """Which backups to keep and which to prune.

    Verified backups, newest first: one is pruned when it is beyond the newest ``keep_count``
    (0: no count limit) or older than ``max_age_days`` (0: no age limit). The newest verified
    backup is never pruned, whatever the limits. Unverified backups never count toward the
    limits; they are pruned once older than the newest verified one (or by age). Temporary
    leftovers are swept (the caller holds the backup lock, so none is being written).
    """
    listed = list(entries)
    verified = sorted((e for e in listed if e.state == "verified"), key=_order, reverse=True)
    unverified = [e for e in listed if e.state == "unverified"]
    max_age = max_age_days * 86_400
    keep: list[str] = []
    prune: list[str] = []
    for index, entry in enumerate(verified):
        too_many = keep_count > 0 and index >= keep_count
        too_old = max_age > 0 and now - entry.epoch > max_age
        if index > 0 and (too_many or too_old):
            prune.append(entry.name)
        else:
            keep.append(entry.name)
    newest = verified[0] if verified else None
    for entry in unverified:
        older = newest is not None and _order(entry) < _order(newest)
        too_old = max_age > 0 and now - entry.epoch > max_age
        (prune if older or too_old else keep).append(entry.name)
    sweep = sorted(e.name for e in listed if e.state == "temporary")
    return RetentionPlan(keep=tuple(sorted(keep)), prune=tuple(sorted(prune)), sweep=tuple(sweep))


def planned_prune(
    entries: Iterable[BackupEntry], *, keep_count: int, max_age_days: int, now: int
) -> tuple[str, ...]:
    """What retention would prune right after the next backup is published (oldest first).

    Retention runs once a new backup is published, so the plan counts that backup too: it is
    the newest verified one (never pruned itself) and takes one of the ``keep_count`` places.
    """
    listed = list(entries)
    upcoming = BackupEntry(
        name=UPCOMING, state="verified", epoch=max([now, *(e.epoch for e in listed)])
    )
    plan = plan_retention(
        [*listed, upcoming], keep_count=keep_count, max_age_days=max_age_days, now=now
    )
    return tuple(n for n in plan.prune if n != UPCOMING)


UPCOMING = "~upcoming"
"""The name :func:`planned_prune` gives the backup about to be taken (sorts after any stamp)."""


def _order(entry: BackupEntry) -> tuple[int, str]:
    return (entry.epoch, entry.name)


def newest_verified(entries: Iterable[BackupEntry]) -> str | None:
    verified = [e for e in entries if e.state == "verified"]
    return max(verified, key=_order).name if verified else None


def epoch_of(name: str) -> int:
    """Seconds since the epoch named by a backup's stamp (0 when the name has none)."""
    import calendar
    import time

    match = NAME_RE.fullmatch(name.removeprefix(".tmp-"))
    if not match:
        return 0
    return calendar.timegm(time.strptime(match["stamp"], "%Y%m%dT%H%M%SZ"))


def parse_inventory(text: str) -> list[BackupEntry]:
    """The script's ``list`` output: ``<state> <epoch> <name>`` per line."""
    entries: list[BackupEntry] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("verified", "unverified", "temporary"):
            continue
        state: State = parts[0]  # type: ignore[assignment]
        entries.append(BackupEntry(name=parts[2], state=state, epoch=int(parts[1])))
    return entries


# --------------------------------------------------------------------------------------------------
# When to back up
# --------------------------------------------------------------------------------------------------

TRIGGER_KEYS = ("migrations", "server", "label")
"""Inputs of the Backup resource whose change takes a backup."""


def backup_reasons(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Why the change from ``olds`` to ``news`` (Backup inputs) takes a backup; empty: none.

    - migration files that are new or changed (they run right after the backup);
    - a change of the settings that replace the database container (image included, hence the
      extension upgrade);
    - a new ``ms5:backupLabel`` (a backup on demand).
    The first deploy (no ``olds``) reports ``first deploy``; the runner finds out whether a
    server exists yet.
    """
    if not olds:
        return ["first deploy of the Backup resource"]
    reasons: list[str] = []
    old_files = _mapping(olds.get("migrations"))
    new_files = _mapping(news.get("migrations"))
    pending = sorted(n for n, sha in new_files.items() if old_files.get(n) != sha)
    if pending:
        shown = ", ".join(pending[:5]) + (
            f" (+{len(pending) - 5} more)" if len(pending) > 5 else ""
        )
        reasons.append(f"migrations pending: {shown}")
    old_server = _mapping(olds.get("server"))
    new_server = _mapping(news.get("server"))
    changed = sorted(
        k for k in set(old_server) | set(new_server) if old_server.get(k) != new_server.get(k)
    )
    if "image" in changed:
        reasons.append(
            f"database image changes ({old_server.get('image')} -> {new_server.get('image')}): "
            "the container is replaced and the extension upgraded"
        )
        changed.remove("image")
    if changed:
        reasons.append(f"database container is replaced (changed: {', '.join(changed)})")
    if str(olds.get("label") or "") != str(news.get("label") or "") and news.get("label"):
        reasons.append(f"backup on demand: ms5:backupLabel is now {news.get('label')!r}")
    return reasons


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def describe_plan(plan: RetentionPlan) -> Sequence[str]:
    return [f"prune {n}" for n in plan.prune] + [f"sweep {n}" for n in plan.sweep]


def schedule_period_seconds(schedule: str) -> int:
    """The time between two scheduled backups of ``ms5:backupSchedule``
    (:func:`~ms5_components.settings.backup_schedule_seconds`, the settings' own grammar).
    Raises ValueError for text that is no schedule."""
    from ms5_components.settings import backup_schedule_seconds

    seconds = backup_schedule_seconds(schedule)
    if seconds is None:
        raise ValueError(
            f"backup schedule {schedule!r}: expected HH:MM (daily, UTC) or every <N>m / every <N>h"
        )
    return seconds


@dataclass(frozen=True, kw_only=True)
class BackupAgeLimit:
    """How old the newest verified backup may be before the verification fails."""

    seconds: int
    rule: str
    """Where the limit comes from, for the report (names the settings)."""


def backup_age_limit(
    *, scheduled: bool, schedule: str, timeout_seconds: int, max_age_hours: int
) -> BackupAgeLimit:
    """The age the schedule allows. With the backup scheduler running (``scheduled``): one
    schedule period plus ``ms5:backupTimeoutSeconds``, because a backup that starts on time and
    takes its whole time budget publishes that late and no later (each backup's age is measured
    from when it was published). Without the scheduler, backups come only from deploys, so no
    schedule bounds them and ``ms5:backupMaxAgeHours`` (the backup alert's threshold) does."""
    if not scheduled:
        return BackupAgeLimit(
            seconds=max_age_hours * 3600,
            rule=f"ms5:backupMaxAgeHours {max_age_hours} (no backup scheduler on this stack)",
        )
    period = schedule_period_seconds(schedule)
    return BackupAgeLimit(
        seconds=period + timeout_seconds,
        rule=f"ms5:backupSchedule {schedule!r} ({_hours(period)} h) + ms5:backupTimeoutSeconds "
        f"{timeout_seconds} ({_hours(timeout_seconds)} h)",
    )


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:g}"
