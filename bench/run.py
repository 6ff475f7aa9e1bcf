"""`make bench` / `python -m bench`: every section in a fresh process, then the tables.

    python -m bench                       # all sections, BENCH_SCALE=1 (a few minutes)
    BENCH_SCALE=5 python -m bench         # five times the messages and repetitions
    python -m bench --only cost,coldstart # some sections (the others keep their last results out)

Writes bench/results/latest.json (everything measured) and bench/results/latest.md (the tables).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ROOT, bench_scale, machine_info, package_versions, read_json, write_json
from bench.report import render

# Cold start first: it is the most sensitive to a busy machine, and nothing else runs meanwhile.
SECTIONS = {
    "coldstart": "bench.coldstart",
    "overhead": "bench.overhead",
    "throughput": "bench.throughput",
    "cost": "bench.cost_run",
    # Last: the longest (two embedded AWS with 5,000 messages each); its model reads the cost section.
    "capacity": "bench.capacity_run",
}
VERSIONS = ("moto", "boto3", "botocore", "aws-lambda-powertools", "jsonschema")


def run_section(name: str, module: str, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{name}.json"
    log = workdir / f"{name}.log"
    started = time.perf_counter()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as output:
        # The sections' own stdout (Lambda log lines, moto chatter) goes to the log, not the report.
        process = subprocess.run(
            [sys.executable, "-m", module, "--out", str(out)],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    seconds = time.perf_counter() - started
    print(f"bench: {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    if process.returncode != 0 or not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        return {"error": f"exit code {process.returncode}; last output:\n\n```\n" + "\n".join(tail) + "\n```"}
    data: dict[str, Any] = read_json(out)
    data["section_seconds"] = seconds
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Relay benchmarks (see bench/README.md)")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--results", default=str(RESULTS_DIR), help="directory for latest.json / latest.md")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="with --only: keep the sections not run from the existing latest.json (each marked `kept_from`)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    scale = bench_scale()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "versions": package_versions(VERSIONS),
        "bench_scale": scale,
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as workdir:
        for name in chosen:
            results["sections"][name] = run_section(name, SECTIONS[name], Path(workdir))
    results["seconds"] = time.perf_counter() - started
    directory = Path(args.results)
    if args.keep:
        keep_previous_sections(results, directory / "latest.json")
    cost = results["sections"].get("cost", {})
    if "cost_per_million" in cost:
        # USD per million messages by scenario ({request_path, all_in}, AWS-like times; both time
        # models inside), or null with the reason in `cost_skipped`.
        results["cost_per_million"] = cost["cost_per_million"]
        results["cost_skipped"] = cost.get("skipped", {})

    capacity = capacity_results(results, directory)
    if capacity is not None:
        # Messages per second at default quotas, the bottleneck, per target and per sender, the
        # reconciler's rounds; the cost section's use per message (this run's, or the last one's).
        results["capacity"] = capacity

    markdown = render(results)
    write_json(directory / "latest.json", results)
    (directory / "latest.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"bench: wrote {directory / 'latest.json'} and {directory / 'latest.md'}", file=sys.stderr)
    failed = [name for name, data in results["sections"].items() if "error" in data]
    if "error" in results.get("capacity", {}):
        failed.append("capacity model")
    return 1 if failed else 0


def keep_previous_sections(results: dict[str, Any], previous_path: Path) -> None:
    """The sections this run did not run, from the previous latest.json, each marked with the date
    it was measured (`kept_from`): one section re-run without losing the others."""
    if not previous_path.exists():
        return
    previous = read_json(previous_path)
    for name, data in previous.get("sections", {}).items():
        if name not in results["sections"]:
            kept_from = data.get("kept_from") or previous.get("machine", {}).get("date")
            results["sections"][name] = {**data, "kept_from": kept_from}


def capacity_results(results: dict[str, Any], directory: Path) -> dict[str, Any] | None:
    """The capacity model over this run's sections, or the previous latest.json's for those not run
    (`--only`); None when there is no cost section to read; an error is reported, not raised."""
    from bench.capacity import build, collect_inputs

    previous_path = directory / "latest.json"
    previous = read_json(previous_path) if previous_path.exists() else None
    try:
        inputs = collect_inputs(results, previous, ROOT)
        return build(inputs) if inputs is not None else None
    except Exception as error:  # the other sections' results are still written
        import traceback

        tail = traceback.format_exc().strip().splitlines()[-8:]
        return {"error": f"{type(error).__name__}: {error}", "traceback": tail}


if __name__ == "__main__":
    raise SystemExit(main())
