"""Lambda code and dependency layer, built without Docker.

- `stage_function_source()` copies `functions/`, `schemas/` and `console/` (the web console's files,
  which the API function serves; nothing else, no bytecode) into `.build/lambda-src/`; every
  function of the stack uses that one asset.
- `ensure_dependency_layer()` pip-installs the runtime dependencies of `pyproject.toml` (minus the
  AWS SDK, which the Lambda runtime provides) as manylinux2014 aarch64 / CPython 3.12 wheels into
  `.build/layer/<key>/python/`. The key is a hash of the requirement list and the pip target, so
  once built, synthesis is offline; a change of dependencies builds a new directory.

Build the layer ahead of synthesis (the Makefile does this during `make install`):

    python -m stacks.bundling
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from stacks.paths import PROJECT_ROOT, PYPROJECT

BUILD_DIR = PROJECT_ROOT / ".build"
FUNCTION_SOURCE_DIR = BUILD_DIR / "lambda-src"
LAYER_ROOT = BUILD_DIR / "layer"

# What the functions need at run time besides their own code (console/: the files GET /console serves).
SOURCE_PACKAGES = ("functions", "schemas", "console")

# The Lambda target the layer is built for; must match the functions' runtime and architecture.
LAMBDA_PYTHON_VERSION = "3.12"
PIP_PLATFORM = "manylinux2014_aarch64"

# The Lambda Python runtime ships the AWS SDK. Installing it again would add ~25 MB and pin an SDK
# the runtime already keeps current, so it is left out of the layer even where a dependency (such
# as aws-xray-sdk -> botocore) pulls it in. Distribution names, normalised (PEP 503).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")

# Bump when the way the layer is built changes, so caches built the old way are not reused.
_LAYER_FORMAT = 2


class LayerBuildError(RuntimeError):
    """The dependency layer is not built and could not be built now."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read a distribution name from requirement {requirement!r}")
    return _normalise(match.group(1))


def layer_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """`[project].dependencies` without the packages the Lambda runtime provides, sorted."""
    with pyproject.open("rb") as handle:
        dependencies: list[str] = tomllib.load(handle)["project"]["dependencies"]
    return sorted(
        requirement.strip() for requirement in dependencies if _requirement_name(requirement) not in RUNTIME_PROVIDED
    )


def _pip_arguments(requirements: list[str], target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--no-compile",
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]


def layer_key(requirements: list[str]) -> str:
    """What identifies a layer build: the requirements and how they are installed."""
    identity = {
        "format": _LAYER_FORMAT,
        "requirements": requirements,
        "python": LAMBDA_PYTHON_VERSION,
        "platform": PIP_PLATFORM,
        "excluded": sorted(RUNTIME_PROVIDED),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def layer_directory(requirements: list[str] | None = None) -> Path:
    """Where the layer for these requirements lives (the asset root; it holds `python/`)."""
    return LAYER_ROOT / layer_key(requirements if requirements is not None else layer_requirements())


def _prune(site: Path) -> None:
    """Drop bytecode and the AWS SDK copies that dependencies pulled in."""
    for cache in [path for path in site.rglob("__pycache__") if path.is_dir()]:
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in site.rglob("*.py[co]"):
        compiled.unlink()
    for entry in list(site.iterdir()):
        name = entry.name
        distribution = name.split("-", 1)[0] if name.endswith(".dist-info") else name
        if _normalise(distribution) in RUNTIME_PROVIDED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # Console scripts are useless in a layer and carry the build machine's interpreter path.
    shutil.rmtree(site / "bin", ignore_errors=True)


def ensure_dependency_layer(requirements: list[str] | None = None, rebuild: bool = False) -> Path:
    """The layer directory, built now if it is not cached yet.

    Raises LayerBuildError with instructions when pip cannot build it (usually: no network).
    """
    requirements = requirements if requirements is not None else layer_requirements()
    destination = layer_directory(requirements)
    if destination.is_dir() and not rebuild:
        return destination

    LAYER_ROOT.mkdir(parents=True, exist_ok=True)
    staging = LAYER_ROOT / f".{destination.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    site.mkdir(parents=True)
    result = subprocess.run(_pip_arguments(requirements, site), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LayerBuildError(
            "The Lambda dependency layer is not built yet and pip could not build it "
            f"(exit code {result.returncode}). Run `make install` (or `python -m stacks.bundling`) "
            "once with network access; synthesis is offline afterwards.\n"
            f"Requirements: {', '.join(requirements)}\npip said:\n{(result.stderr or result.stdout).strip()}"
        )
    _prune(site)
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    return destination


def stage_function_source(destination: Path = FUNCTION_SOURCE_DIR) -> Path:
    """Copy the functions' code, schemas and console files into `destination`, replacing what was there."""
    staging = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")
    for package in SOURCE_PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, staging / package, ignore=ignore)
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    return destination


def directory_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rebuild = "--rebuild" in args
    try:
        layer = ensure_dependency_layer(rebuild=rebuild)
    except LayerBuildError as error:
        print(error, file=sys.stderr)
        return 1
    source = stage_function_source()
    print(f"layer:  {layer.relative_to(PROJECT_ROOT)} ({directory_size(layer) / 1_048_576:.1f} MiB unzipped)")
    print(f"source: {source.relative_to(PROJECT_ROOT)} ({directory_size(source) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
