"""Cold start of every Lambda and the size of the deployment assets.

Import time: each handler module (functions/*/handler.py) is imported in a fresh interpreter, timed
around the import only (interpreter start-up excluded), in an environment like Lambda's
(LAMBDA_TASK_ROOT set, Powertools tracing on as deployed: Tracer imports and patches the X-Ray SDK).
Runs are interleaved round-robin with the floor, a bare `import boto3`, after one untimed run of
each so bytecode caches are warm for all alike; the median of the runs is compared with the
floor's (target: within 1.5x). One `python -X importtime` run per handler attributes the time
above the floor to top-level packages. The layer is shipped without bytecode (stacks/bundling.py
strips it and Lambda cannot write to /opt), so the compile time of the handler's modules from the
code asset and the layer is reported beside it.

Assets: the code asset (stacks.bundling.stage_function_source into a temporary directory, zipped)
and the dependency layer (.build/layer/<key>, built by stacks.bundling if missing), zipped with
zlib's default level as `cdk deploy` does. Target: the largest under 5 MB (5,000,000 bytes).

Run as `python -m bench.coldstart --out FILE` (bench.run does it in a fresh process).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, median, scaled, section_main
from functions.contract.settings_names import Setting

FLOOR = "boto3"
RATIO_TARGET = 1.5
ASSET_TARGET_BYTES = 5_000_000
_TIMER = (
    "import importlib, sys, time\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(f'{(time.perf_counter() - started) * 1000:.3f}')\n"
)
_COMPILE = (
    "import importlib.util, json, sys, time\n"
    "costs = {}\n"
    "for name in json.loads(sys.stdin.read()):\n"
    "    try:\n"
    "        spec = importlib.util.find_spec(name)\n"
    "    except Exception:\n"
    "        continue\n"
    "    origin = spec.origin if spec else None\n"
    "    if not origin or not origin.endswith('.py'):\n"
    "        continue\n"
    "    source = open(origin, 'rb').read()\n"
    "    started = time.perf_counter()\n"
    "    compile(source, origin, 'exec')\n"
    "    costs[name] = (time.perf_counter() - started) * 1000\n"
    "print(json.dumps(costs))\n"
)


def handler_modules() -> list[str]:
    return sorted(f"functions.{path.parent.name}.handler" for path in (ROOT / "functions").glob("*/handler.py"))


RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


@dataclass
class LambdaLayout:
    """Lambda's import path, rebuilt from this virtualenv's packages (same versions, no extras).

    /var/task = the staged code asset, /opt/python = the layer's top-level packages, the runtime's
    site-packages = the AWS SDK and its dependencies. Packages that are installed here for
    development only (requests, moto, ...) stay invisible, as on Lambda, where for instance the
    X-Ray SDK's patch_all finds no `requests` to patch. Interpreters run with -S and PYTHONPATH.
    """

    task: Path
    path: list[Path]
    description: str

    @classmethod
    def build(cls, workdir: Path, layer: Path | None) -> LambdaLayout:
        from stacks.bundling import stage_function_source

        task = stage_function_source(workdir / "task")
        names = layer_packages(layer)
        if not names:
            return cls(task, [], "this virtualenv (the layer is not built, so its package list is unknown)")
        site = Path(sysconfig.get_paths()["purelib"])
        distributions = metadata.packages_distributions()
        opt, runtime = workdir / "opt-python", workdir / "runtime"
        for directory, wanted in ((opt, sorted(names)), (runtime, RUNTIME_PROVIDED)):
            directory.mkdir()
            for name in wanted:
                for candidate in (site / name, site / f"{name}.py"):
                    if candidate.exists():
                        (directory / candidate.name).symlink_to(candidate)
                        break
                for distribution in distributions.get(name, []):
                    found = metadata.distribution(distribution)
                    dist_path = getattr(found, "_path", None)
                    if dist_path is not None and not (directory / Path(dist_path).name).exists():
                        (directory / Path(dist_path).name).symlink_to(dist_path)
        return cls(task, [task, opt, runtime], "Lambda-like: code asset, layer packages, runtime SDK (python -S)")

    def environment(self, module: str) -> dict[str, str]:
        """Like a deployed function: in Lambda (tracing on), Powertools configured as the stack does."""
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("POWERTOOLS_")
            and key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPATH")
        }
        name = module.split(".")[1] if module.startswith("functions.") else "floor"
        environment.update(
            {
                "LAMBDA_TASK_ROOT": str(self.task),
                "AWS_LAMBDA_FUNCTION_NAME": f"relay-{name}",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_SERVICE_NAME": "relay",
                "POWERTOOLS_METRICS_NAMESPACE": "Relay",
                Setting.TABLE_NAME: "relay",
            }
        )
        if self.path:
            environment["PYTHONPATH"] = os.pathsep.join(str(path) for path in self.path)
        return environment

    def python(self, args: list[str], module: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["-S"] if self.path else []
        return subprocess.run(
            [sys.executable, *flags, *args],
            cwd=self.task if self.path else ROOT,
            env=self.environment(module),
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        )


def time_import(layout: LambdaLayout, module: str) -> float:
    return float(layout.python(["-c", _TIMER, module], module).stdout.strip().splitlines()[-1])


def import_profile(layout: LambdaLayout, module: str) -> dict[str, tuple[float, float]]:
    """module -> (self ms, cumulative ms) from one `python -X importtime` run."""
    process = layout.python(["-X", "importtime", "-c", f"import {module}"], module)
    profile: dict[str, tuple[float, float]] = {}
    for line in process.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        profile[name] = (int(self_us) / 1000, int(cumulative_us) / 1000)
    return profile


def attribute(profile: dict[str, tuple[float, float]], floor: set[str], top: int = 6) -> list[dict[str, Any]]:
    """Self time of the modules the floor does not import, by top-level package, largest first."""
    packages: dict[str, float] = defaultdict(float)
    modules: dict[str, int] = defaultdict(int)
    for name, (self_ms, _) in profile.items():
        if name in floor:
            continue
        package = name.split(".")[0]
        packages[package] += self_ms
        modules[package] += 1
    ranked = sorted(packages.items(), key=lambda item: item[1], reverse=True)[:top]
    return [{"package": name, "self_ms": round(ms, 1), "modules": modules[name]} for name, ms in ranked]


def heaviest_modules(profile: dict[str, tuple[float, float]], floor: set[str], top: int = 3) -> list[dict[str, Any]]:
    ranked = sorted(
        ((name, times[0]) for name, times in profile.items() if name not in floor),
        key=lambda item: item[1],
        reverse=True,
    )[:top]
    return [{"module": name, "self_ms": round(ms, 1)} for name, ms in ranked]


def layer_packages(layer: Path | None) -> set[str]:
    if layer is None or not (layer / "python").is_dir():
        return set()
    names = set()
    for entry in (layer / "python").iterdir():
        if entry.name.endswith((".dist-info", ".egg-info")) or entry.name in ("bin", "__pycache__"):
            continue
        names.add(entry.name.removesuffix(".py"))
    return names


def compile_costs(layout: LambdaLayout, modules: set[str]) -> dict[str, float]:
    process = layout.python(["-c", _COMPILE], FLOOR, stdin=json.dumps(sorted(modules)))
    costs: dict[str, float] = json.loads(process.stdout.strip().splitlines()[-1])
    return costs


def zipped_size(directory: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return buffer.tell()


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def measure_assets() -> tuple[dict[str, Any], Path | None]:
    from stacks.bundling import LayerBuildError, ensure_dependency_layer, layer_directory, stage_function_source

    assets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-src-") as staging:
        source = stage_function_source(Path(staging) / "lambda-src")
        assets["code (functions/ + schemas/)"] = {"zipped": zipped_size(source), "unzipped": directory_bytes(source)}
    layer: Path | None = layer_directory()
    note = "cached"
    if layer is None or not layer.is_dir():
        try:
            layer = ensure_dependency_layer()
            note = "built now"
        except LayerBuildError as error:
            layer, note = None, f"not built: {str(error).splitlines()[0]}"
    if layer is not None:
        assets["dependency layer"] = {
            "zipped": zipped_size(layer),
            "unzipped": directory_bytes(layer),
            "path": str(layer.relative_to(ROOT)),
            "note": note,
        }
    largest = max((asset["zipped"] for asset in assets.values()), default=0)
    return {
        "assets": assets,
        "largest_zipped": largest,
        "target_bytes": ASSET_TARGET_BYTES,
        "passes": bool(assets) and largest < ASSET_TARGET_BYTES and "dependency layer" in assets,
        "layer_note": note,
    }, layer


def run(scale: float) -> dict[str, Any]:
    runs = scaled(7, scale, minimum=7)
    modules = handler_modules()
    candidates = [FLOOR, *modules]
    assets, layer = measure_assets()
    with tempfile.TemporaryDirectory(prefix="relay-bench-lambda-") as workdir:
        layout = LambdaLayout.build(Path(workdir), layer)
        for module in candidates:  # warm the bytecode caches; the timed runs all read them
            time_import(layout, module)
        samples: dict[str, list[float]] = {module: [] for module in candidates}
        for _ in range(runs):
            for module in candidates:
                samples[module].append(time_import(layout, module))

        floor_modules = set(import_profile(layout, FLOOR))
        profiles = {module: import_profile(layout, module) for module in modules}
        shipped = layer_packages(layer) | {"functions"}
        uncached = {name for profile in profiles.values() for name in profile if name.split(".")[0] in shipped}
        compile_ms = compile_costs(layout, uncached)

    floor_median = median(samples[FLOOR])
    handlers = []
    for module in modules:
        value = median(samples[module])
        ratio = value / floor_median
        profile = profiles[module]
        handlers.append(
            {
                "handler": module,
                "median_ms": value,
                "min_ms": min(samples[module]),
                "ratio_to_floor": ratio,
                # Noise only adds time: the ratio of the fastest runs shows how close a borderline miss is.
                "ratio_of_minimums": min(samples[module]) / min(samples[FLOOR]),
                "passes": ratio <= RATIO_TARGET,
                "above_floor_by_package": attribute(profile, floor_modules),
                "heaviest_modules": heaviest_modules(profile, floor_modules),
                "compile_ms_without_bytecode": sum(compile_ms.get(name, 0.0) for name in profile),
                "samples_ms": samples[module],
            }
        )
    return {
        "runs_per_module": runs,
        "import_path": layout.description,
        "floor": {"module": FLOOR, "median_ms": floor_median, "samples_ms": samples[FLOOR]},
        "ratio_target": RATIO_TARGET,
        "handlers": handlers,
        "all_pass": all(handler["passes"] for handler in handlers),
        "shipped_packages_without_bytecode": sorted(shipped),
        "asset_sizes": assets,
    }


def main(argv: list[str] | None = None) -> int:
    return section_main("cold start and asset sizes", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
