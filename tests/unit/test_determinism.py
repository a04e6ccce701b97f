"""A no-op `pulumi up` must change nothing: two evaluations, in two separate processes, register
byte-identical inputs — the serialized dynamic providers included."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import ROOT

SNAPSHOT = """
import hashlib, json, sys
sys.path.insert(0, {tests!r})
from harness import run_program
from stacks import overrides_for
run = run_program({stack!r}, overrides_for({stack!r}))
doc = json.dumps(
    {{u: (r.inputs, sorted(r.dependencies), {{k: sorted(v) for k, v in r.property_dependencies.items()}})
      for u, r in sorted(run.registrations.items())}},
    sort_keys=True,
)
providers = [r for r in run.registrations.values() if r.is_dynamic and "__provider" in r.inputs]
print(hashlib.sha256(doc.encode()).hexdigest(), len(providers))
"""


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_separate_processes_register_identical_inputs(stack):
    code = SNAPSHOT.format(tests=str(ROOT / "tests"), stack=stack)
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()
        for _ in range(2)
    ]
    assert outs[0] == outs[1]
    assert int(outs[0][1]) >= 2  # the dynamic providers are part of what is compared
