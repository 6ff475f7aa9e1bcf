"""The synthesized template `relay dev` runs, kept current with the sources.

`relay dev` and the tests run `cdk.out/Relay.template.json`, the file `cdk deploy` deploys, so the
local system cannot drift from the deployed one. Synthesis takes seconds, so it happens only when
the template is missing or older than a file it is built from; a lock keeps concurrent test
processes of one checkout from synthesizing at the same time.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from stacks.paths import CDK_OUT, PROJECT_ROOT

DEFAULT_TEMPLATE = CDK_OUT / "Relay.template.json"
# What the template is built from (cdk.json's "watch" list, the same files).
SOURCES = ("stacks", "functions", "statemachines", "schemas", "console", "stacks/definitions.py", "cdk.json", "app.py")
_IGNORED_PARTS = frozenset({"__pycache__"})


class SynthError(RuntimeError):
    """The CDK app did not produce a template."""


def _source_files(root: Path) -> Iterator[Path]:
    for source in SOURCES:
        path = root / source
        if path.is_file():
            yield path
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.is_file() and not _IGNORED_PARTS.intersection(child.parts) and child.suffix != ".pyc":
                    yield child


def newest_source_mtime(root: Path = PROJECT_ROOT) -> float:
    return max((path.stat().st_mtime for path in _source_files(root)), default=0.0)


def is_current(template: Path = DEFAULT_TEMPLATE, root: Path = PROJECT_ROOT) -> bool:
    return template.exists() and template.stat().st_mtime >= newest_source_mtime(root)


def synthesize(root: Path = PROJECT_ROOT) -> None:
    """`python app.py` (CDK synth, offline, no credentials) into `root`/cdk.out."""
    done = subprocess.run(
        [sys.executable, str(root / "app.py")],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "CDK_OUTDIR": str(root / "cdk.out")},
        check=False,
    )
    if done.returncode != 0:
        raise SynthError(f"synthesizing the stack failed:\n{done.stdout}{done.stderr}")


def current_template(template: Path | None = None) -> Path:
    """The template to run: `template` as given, or cdk.out's, synthesized first when stale."""
    if template is not None:
        if not template.exists():
            raise FileNotFoundError(f"no template at {template}")
        return template
    if is_current():
        return DEFAULT_TEMPLATE
    CDK_OUT.mkdir(exist_ok=True)
    with (CDK_OUT / ".relay-synth.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_current():  # another process may have synthesized while this one waited
            synthesize()
            # CDK may leave an unchanged file's time alone; the next start must see it current.
            os.utime(DEFAULT_TEMPLATE)
    if not DEFAULT_TEMPLATE.exists():
        raise SynthError(f"synthesis did not write {DEFAULT_TEMPLATE}")
    return DEFAULT_TEMPLATE
