"""Mutation testing of the modules whose rules protect users, with mutmut, one module at a time.

    ./ms5 mutate                     # every module of [tool.ms5.mutate.modules]
    ./ms5 mutate settings tuning     # only these
    ./ms5 mutate plan --survivors    # also print the diff of every surviving mutant
    ./ms5 mutate --keep plan         # reuse the previous run's results for unchanged code

Not part of ``./ms5 test``: a run takes minutes per module. Each module gets its own work
directory ``.mutmut/<module>/`` laid out the way mutmut expects a project (``src/`` is
``components/src``, or ``policy/`` for the policy pack's rules; ``tests/``, ``infra/``, ``tools/``, ``migrations/`` and the stack files are
linked in), with a ``pyproject.toml`` holding the repository's pytest options and
``[tool.mutmut]`` plus this module's file and tests. mutmut mutates only that file, runs only
that module's fast unit tests (no real service), and for each mutant only the tests that call the
mutated function. The score is killed / mutants; every other outcome (survived, no test, timeout,
suspicious) counts against it. The exit status is 1 when a module scores below the target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutmut"
LINKED = ("tests", "infra", "tools", "migrations", "Pulumi.yaml")
"""What the tests read besides the package: linked into the work directory and copied by mutmut
(``also_copy``) next to the mutated package, so ``tests/harness.py`` finds the program and the
stack files, and ``repository_migrations_dir()`` the schema."""
SELECT_PLUGIN = "mutate_select"
"""The pytest plugin (tools/mutate_select.py) that leaves out the tests of the whole program."""
PACKAGE_ROOTS = (("components", "src"), ("policy",))
"""Directories whose packages can be mutated: the one holding the file becomes ``src/`` of the
work directory (mutmut mutates only under ``src/``): the components' sources, or the policy pack
(``ms5_policy``), whose tests import it as a top-level package."""
DETECTED = frozenset({"killed", "timeout"})
"""Outcomes that count for the score: a test failed, or the mutant never finished (a loop)."""


@dataclass(frozen=True, kw_only=True)
class Module:
    """One module under mutation and the tests that pin its rules."""

    name: str
    source: Path
    """Path of the file, relative to the repository (under one of ``PACKAGE_ROOTS``)."""
    tests: tuple[Path, ...]
    """Test files (globs expanded), relative to the repository."""

    @property
    def package_root(self) -> Path:
        """The directory linked as ``src/`` in the work directory."""
        for root in PACKAGE_ROOTS:
            if self.source.parts[: len(root)] == root:
                return Path(*root)
        raise ValueError(
            f"{self.source} is not under {' or '.join('/'.join(r) for r in PACKAGE_ROOTS)}"
        )

    @property
    def inside_src(self) -> Path:
        """Path of the file in the work directory."""
        return Path("src", *self.source.parts[len(self.package_root.parts) :])


@dataclass(frozen=True, kw_only=True)
class Score:
    module: str
    statuses: dict[str, str]
    """Mutant name -> mutmut status (killed, survived, no tests, timeout, ...)."""

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in DETECTED)

    @property
    def timeouts(self) -> int:
        return sum(1 for s in self.statuses.values() if s == "timeout")

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0

    def not_killed(self) -> list[tuple[str, str]]:
        return sorted((n, s) for n, s in self.statuses.items() if s not in DETECTED)


def load_config() -> tuple[dict[str, Any], dict[str, Any], list[Module], float]:
    """pytest options, mutmut options, the modules and the target score from pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = data["tool"]
    mutate = tool["ms5"]["mutate"]
    modules = []
    for name, entry in mutate["modules"].items():
        source = Path(entry["source"])
        if not (ROOT / source).is_file():
            raise SystemExit(f"mutate: [tool.ms5.mutate.modules.{name}] source {source} is missing")
        if not any(source.parts[: len(root)] == root for root in PACKAGE_ROOTS):
            raise SystemExit(
                f"mutate: {source} is not under "
                + " or ".join("/".join(root) for root in PACKAGE_ROOTS)
            )
        tests: list[Path] = []
        for pattern in entry["tests"]:
            found = sorted(p.relative_to(ROOT) for p in ROOT.glob(pattern))
            if not found:
                raise SystemExit(
                    f"mutate: [tool.ms5.mutate.modules.{name}] {pattern} matches no file"
                )
            tests += [p for p in found if p not in tests]
        modules.append(Module(name=name, source=source, tests=tuple(tests)))
    mutmut_options = dict(tool.get("mutmut", {}))
    # Tests of the whole program under mocks are left out (tools/mutate_select.py).
    mutmut_options["pytest_add_cli_args"] = [
        *mutmut_options.get("pytest_add_cli_args", []),
        "-p",
        SELECT_PLUGIN,
    ]
    return tool["pytest"]["ini_options"], mutmut_options, modules, float(mutate["target"])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"] + [f"{key} = {_toml_value(table[key])}" for key in sorted(table)]
    return "\n".join(lines) + "\n"


def prepare(module: Module, pytest_options: dict[str, Any], mutmut_options: dict[str, Any]) -> Path:
    """Lay out ``.mutmut/<module>/`` for mutmut and return it."""
    work = WORK / module.name
    work.mkdir(parents=True, exist_ok=True)
    links = {"src": ROOT / module.package_root, **{name: ROOT / name for name in LINKED}}
    links.update({p.name: p for p in ROOT.glob("Pulumi.*.yaml")})
    # mutmut puts the work directory's copy (mutants/) on sys.path: the plugin loads from there.
    links[f"{SELECT_PLUGIN}.py"] = ROOT / "tools" / f"{SELECT_PLUGIN}.py"
    for name, target in links.items():
        link = work / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    inside_src = module.inside_src
    options = dict(mutmut_options)
    options.update(
        {
            "source_paths": ["src"],
            "only_mutate": [str(inside_src)],
            "also_copy": sorted(n for n in links if n != "src"),
            "pytest_add_cli_args_test_selection": [str(t) for t in module.tests],
        }
    )
    (work / "pyproject.toml").write_text(
        "# Written by tools/mutate.py for one mutmut run; edit pyproject.toml instead.\n"
        + _toml_table("tool.pytest.ini_options", pytest_options)
        + _toml_table("tool.mutmut", options)
    )
    return work


def mutmut(work: Path, *args: str, log: Path | None = None) -> int:
    """Run mutmut in ``work`` in its own process group; its output goes to ``log`` when given.

    Interrupted (Ctrl-C, SIGTERM), the whole group is stopped: no mutant is left running.
    """
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        raise SystemExit("mutate: mutmut is not installed in this environment; run `uv sync`")
    out = log.open("w") if log is not None else None
    try:
        proc = subprocess.Popen(
            [str(exe), *args],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        if out is not None:
            out.close()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def read_score(module: Module, work: Path) -> Score:
    from mutmut.stats import status_by_exit_code

    meta = work / "mutants" / module.inside_src.with_suffix(".py.meta")
    if not meta.exists():
        raise SystemExit(f"mutate: mutmut left no results for {module.source} ({meta})")
    exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return Score(
        module=module.name,
        statuses={name: status_by_exit_code[code] for name, code in exit_codes.items()},
    )


class MutmutFailed(Exception):
    """mutmut itself failed (not a surviving mutant): the message has the end of its log."""


def run_module(
    module: Module,
    args: argparse.Namespace,
    pytest_options: dict[str, Any],
    mutmut_options: dict[str, Any],
) -> Score:
    if not args.keep:
        shutil.rmtree(WORK / module.name, ignore_errors=True)
    work = prepare(module, pytest_options, mutmut_options)
    log = work / "mutmut.log"
    print(
        f"==> {module.name}: mutating {module.source}, tests {', '.join(map(str, module.tests))}"
        f" (progress: {log.relative_to(ROOT)})",
        flush=True,
    )
    code = mutmut(work, "run", "--max-children", str(args.max_children), log=log)
    if code != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        raise MutmutFailed(
            "\n".join(tail) + f"\nmutate: mutmut failed for {module.name} (exit {code}); see {log}"
        )
    score = read_score(module, work)
    if args.survivors:
        for name, _ in score.not_killed():
            mutmut(work, "show", name)
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutants (default 1)")
    parser.add_argument("--keep", action="store_true", help="reuse results of the previous run")
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    pytest_options, mutmut_options, modules, target = load_config()
    known = {m.name: m for m in modules}
    unknown = [name for name in args.modules if name not in known]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = [known[name] for name in args.modules] if args.modules else modules

    try:
        scores = [run_module(module, args, pytest_options, mutmut_options) for module in chosen]
    except KeyboardInterrupt:
        print("mutate: interrupted; no mutant is left running", file=sys.stderr)
        return 130
    except MutmutFailed as exc:
        print(exc, file=sys.stderr)
        return 2

    print("\nmodule             killed/total  score   not killed  (timeouts count as killed)")
    failed = False
    for score in scores:
        below = score.percent < target
        failed = failed or below
        print(
            f"{score.module:<18} {score.killed:>5}/{score.total:<6} {score.percent:5.1f} %"
            f"  {len(score.not_killed())}  ({score.timeouts} timeouts)"
            f"{'  BELOW TARGET' if below else ''}"
        )
        for name, status in score.not_killed():
            print(f"    {status:<10} {name}")
    print(f"target: {target:.0f} % per module; kept survivors are explained in docs/mutation.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
