"""`./ms5 deploy`: preview with the policy pack, confirmation before production, `pulumi up` with
the pack. Pulumi, Docker and uv are stand-ins that record how they were called."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from harness import ROOT

PACK_FLAGS = "--policy-pack policy --policy-pack-config policy/config/{stack}.json"


def _tool(bin_dir: Path, name: str, script: str) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "id", "cat", "mkdir"):
        target = next(p / tool for p in (Path("/usr/bin"), Path("/bin")) if (p / tool).exists())
        (bin_dir / tool).symlink_to(target)
    log = tmp_path / "calls.log"
    preview_rc = tmp_path / "preview_rc"
    preview_rc.write_text("0")
    _tool(
        bin_dir,
        "pulumi",
        f'echo "pulumi $*" >> {log}\n'
        f'case "$1" in preview) exit $(cat {preview_rc}) ;; esac\nexit 0',
    )
    _tool(bin_dir, "docker", "exit 0")
    _tool(bin_dir, "uv", f'echo "uv $*" >> {log}; exit 0')
    return tmp_path, bin_dir, log, preview_rc


def _deploy(fake, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tmp_path, bin_dir, _, _ = fake
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
        "PULUMI_BACKEND_URL": "file://" + str(tmp_path),
    }
    return subprocess.run(
        [str(ROOT / "ms5"), "deploy", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        input=stdin,
        check=False,
    )


def _pulumi_calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("pulumi ")]


def test_staging_previews_then_applies_with_the_pack(fake):
    done = _deploy(fake, "staging")
    assert done.returncode == 0, done.stderr
    flags = PACK_FLAGS.format(stack="staging")
    assert _pulumi_calls(fake[2]) == [
        "pulumi stack select --create staging --non-interactive",
        f"pulumi preview --stack staging --diff {flags}",
        f"pulumi up --stack staging --yes {flags}",
    ]


def test_production_without_a_terminal_needs_yes(fake):
    done = _deploy(fake, "production", stdin="y\n")
    assert done.returncode == 1
    assert "re-run with --yes" in done.stderr
    calls = _pulumi_calls(fake[2])
    assert calls[-1].startswith("pulumi preview --stack production")  # previewed, not applied
    assert not any(c.startswith("pulumi up") for c in calls)


def test_production_with_yes_applies_with_the_pack(fake):
    done = _deploy(fake, "production", "--yes")
    assert done.returncode == 0, done.stderr
    assert _pulumi_calls(fake[2])[-1] == (
        "pulumi up --stack production --yes " + PACK_FLAGS.format(stack="production")
    )


def test_a_failed_preview_or_violation_stops_before_up(fake):
    fake[3].write_text("255")
    done = _deploy(fake, "staging")
    assert done.returncode == 1
    assert "the preview failed" in done.stderr and "nothing was changed" in done.stderr
    assert not any(c.startswith("pulumi up") for c in _pulumi_calls(fake[2]))


def test_bad_arguments(fake):
    assert "unknown option --force" in _deploy(fake, "staging", "--force").stderr
    assert "usage: ./ms5 deploy STACK" in _deploy(fake, "staging", "production").stderr


@pytest.mark.parametrize(("answer", "applied"), [("n", False), ("y", True)])
def test_production_asks_on_a_terminal(fake, answer, applied):
    import os
    import pty

    tmp_path, bin_dir, log, _ = fake
    primary, secondary = pty.openpty()
    os.write(primary, f"{answer}\n".encode())
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
        "PULUMI_BACKEND_URL": "file://" + str(tmp_path),
    }
    try:
        done = subprocess.run(
            [str(ROOT / "ms5"), "deploy", "production"],
            stdin=secondary,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
            timeout=60,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert "Apply this plan to production? [y/N]" in done.stderr
    ups = [c for c in _pulumi_calls(log) if c.startswith("pulumi up")]
    assert (done.returncode == 0) is applied and bool(ups) is applied, done.stderr
    if not applied:
        assert "not applied: production is unchanged" in done.stderr
