"""The Lambda code asset and the dependency layer, built without Docker."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stacks import bundling

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_layer_requirements_are_the_runtime_dependencies_without_the_aws_sdk() -> None:
    # Given the project's runtime dependencies
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    # When the layer's requirement list is made
    requirements = bundling.layer_requirements()
    # Then it is all of them but boto3, which the Lambda runtime provides
    assert requirements == sorted(d for d in dependencies if not d.lower().startswith("boto3"))
    assert any(r.startswith("aws-lambda-powertools[tracer]") for r in requirements)
    assert any(r.startswith("jsonschema") for r in requirements)
    # Only the format checkers the schema uses, not format-nongpl's import-time RFC 3987 grammar
    assert not any("format-nongpl" in r for r in requirements)
    assert {"rfc3339-validator", "rfc3986-validator"} <= {r.split(">")[0] for r in requirements}


def _module_level_imports(package: Path) -> set[str]:
    """Top-level names the package's modules import when loaded (not imports guarded inside functions)."""
    names: set[str] = set()
    for module in package.rglob("*.py"):
        for node in ast.parse(module.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "functions"}


def test_every_package_the_functions_import_is_declared_and_so_in_the_layer() -> None:
    # Given the third-party packages the Lambda code imports as it loads (urllib3: the delivery client)
    imported = _module_level_imports(PROJECT_ROOT / "functions")
    assert "urllib3" in imported
    # When each is traced to the distribution that provides it
    providers = importlib.metadata.packages_distributions()
    declared = {bundling._requirement_name(r) for r in bundling.layer_requirements()} | set(bundling.RUNTIME_PROVIDED)
    undeclared = {
        name for name in imported if not {bundling._normalise(d) for d in providers.get(name, [name])} & declared
    }
    # Then every one is a declared runtime dependency: in the layer, or provided by the Lambda runtime
    assert undeclared == set()
    assert any(r.startswith("urllib3>=2") for r in bundling.layer_requirements())


def test_layer_key_follows_the_requirements() -> None:
    # Given two requirement lists
    # Then equal lists share a cache entry and different ones do not
    assert bundling.layer_key(["a==1"]) == bundling.layer_key(["a==1"])
    assert bundling.layer_key(["a==1"]) != bundling.layer_key(["a==2"])


def test_staged_source_holds_only_functions_schemas_and_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a project with bytecode and other packages lying around
    project = tmp_path / "project"
    for path in (
        "functions/validate/handler.py",
        "functions/__pycache__/x.cpython-311.pyc",
        "schemas/m.json",
        "console/index.html",
    ):
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("")
    (project / "relay").mkdir()
    monkeypatch.setattr(bundling, "PROJECT_ROOT", project)
    # When the source is staged (twice: a second staging replaces the first)
    bundling.stage_function_source(tmp_path / "lambda-src")
    staged = bundling.stage_function_source(tmp_path / "lambda-src")
    # Then only the three folders are there (the console's files beside the functions), without bytecode
    assert sorted(entry.name for entry in staged.iterdir()) == ["console", "functions", "schemas"]
    assert not [path for path in staged.rglob("*") if path.name == "__pycache__" or path.suffix == ".pyc"]
    assert (staged / "functions" / "validate" / "handler.py").is_file()
    assert (staged / "console" / "index.html").is_file()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["lambda-src", "project"]


def test_a_cached_layer_is_used_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a layer already built for these requirements
    monkeypatch.setattr(bundling, "LAYER_ROOT", tmp_path)
    cached = bundling.layer_directory(["a==1"])
    (cached / "python").mkdir(parents=True)

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", no_network)
    # When the layer is asked for
    # Then the cache answers
    assert bundling.ensure_dependency_layer(["a==1"]) == cached


def test_a_missing_layer_without_network_fails_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no cached layer and a pip that cannot reach the index
    monkeypatch.setattr(bundling, "LAYER_ROOT", tmp_path)

    def offline(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args[0], 1, stdout="", stderr="No matching distribution found")

    monkeypatch.setattr(subprocess, "run", offline)
    # When the layer is asked for
    with pytest.raises(bundling.LayerBuildError) as failure:
        bundling.ensure_dependency_layer(["a==1"])
    # Then the error says how to fix it, and no half-built layer is left to be mistaken for a cache
    assert "make install" in str(failure.value)
    assert "No matching distribution found" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_pip_targets_lambda_arm64_python_312_wheels_only() -> None:
    # Given the pip command line of a layer build
    arguments = bundling._pip_arguments(["a==1"], Path("/tmp/target"))
    # Then it fetches manylinux aarch64 CPython 3.12 wheels (no sdists, so no compiler or Docker)
    joined = " ".join(arguments)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--implementation cp" in joined
    assert "--python-version 3.12" in joined
    assert "--only-binary=:all:" in joined
    assert "--target /tmp/target" in joined


def test_pruning_drops_the_aws_sdk_and_bytecode(tmp_path: Path) -> None:
    # Given an installed tree with the SDK pulled in by a dependency, bytecode and scripts
    for name in ("boto3", "botocore", "s3transfer", "jsonschema", "jsonschema/__pycache__", "bin"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("botocore-1.0.dist-info", "boto3-1.0.dist-info", "jsonschema-4.0.dist-info"):
        (tmp_path / name).mkdir()
    (tmp_path / "jsonschema" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"")
    # When it is pruned
    bundling._prune(tmp_path)
    # Then only the real dependencies remain
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["jsonschema", "jsonschema-4.0.dist-info"]
    assert not (tmp_path / "jsonschema" / "__pycache__").exists()
