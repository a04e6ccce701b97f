"""`./ms5 services` and `./ms5 pin-images` answer a wrong call with ./ms5's own usage."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import ROOT


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "dirname", "sed", "cat"):
        target = next(Path(p) / tool for p in ("/usr/bin", "/bin") if (Path(p) / tool).exists())
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(target)
    return subprocess.run(
        [str(ROOT / "ms5"), *args],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        cwd=ROOT,
        check=False,
    )


def test_services_without_a_command_prints_ms5_usage(tmp_path):
    done = _run(["services"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("ms5: services needs a command\n")
    assert "usage: ./ms5 services start|stop|status|env|provision" in done.stderr
    assert "ms5_testenv.py" not in done.stderr  # not argparse's usage of the tool
    assert "Traceback" not in done.stderr


def test_services_with_an_unknown_command(tmp_path):
    done = _run(["services", "restart"], tmp_path)
    assert done.returncode == 2
    assert "ms5: unknown services command 'restart'" in done.stderr
    assert "usage: ./ms5 services" in done.stderr


def test_services_help(tmp_path):
    done = _run(["services", "--help"], tmp_path)
    assert done.returncode == 0
    for command in ("start", "stop", "status", "env", "provision"):
        assert f"\n  {command} " in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pin-images"], "usage: ./ms5 pin-images STACK"),
        (["pin-images", "qa"], "no Pulumi.qa.yaml: the stacks are staging and production."),
    ],
)
def test_pin_images_usage_and_unknown_stack(tmp_path, args, message):
    done = _run(args, tmp_path)
    assert done.returncode == 1
    assert message in done.stderr


def test_pin_images_without_docker(tmp_path):
    done = _run(["pin-images", "production"], tmp_path)
    assert done.returncode == 1
    assert "pinning needs Docker to resolve tags" in done.stderr
    assert "https://docs.docker.com/engine/install/" in done.stderr


def test_every_listed_command_dispatches_to_a_defined_function():
    """Each `./ms5 X` in the usage header has a case arm calling a function that exists."""
    import re

    script = (ROOT / "ms5").read_text()
    listed = set(re.findall(r"^#   \./ms5 ([a-z-]+)", script, flags=re.M))
    arms = dict(re.findall(r"^  ([a-z-]+)\) shift; (cmd_[a-z_]+) ", script, flags=re.M))
    defined = set(re.findall(r"^(cmd_[a-z_]+)\(\) \{", script, flags=re.M))
    assert {"deploy", "test", "mutate", "restore"} <= listed
    assert listed == set(arms), "usage header and case arms disagree"
    assert set(arms.values()) <= defined, set(arms.values()) - defined


def test_mutate_help_runs_through_ms5():
    done = subprocess.run(
        [str(ROOT / "ms5"), "mutate", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Mutation testing" in done.stdout
