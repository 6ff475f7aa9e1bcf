"""Helpers shared by the benchmark sections: scale, percentiles, tables, machine facts, JSON I/O."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from functions.contract.settings_names import ToolVariable
from functions.domain.clock import iso_seconds

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
PRICES_PATH = BENCH_DIR / "prices.json"


def bench_scale() -> float:
    """`BENCH_SCALE` multiplies message counts and repetitions (1 = the quick default run)."""
    raw = os.environ.get("BENCH_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"BENCH_SCALE must be a number, not {raw!r}") from None
    if value <= 0:
        raise SystemExit("BENCH_SCALE must be positive")
    return value


def scaled(base: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values_seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    ms = [value * 1000 for value in values_seconds]
    return {
        "count": len(ms),
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else math.nan,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    memory_gb: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1_048_576, 1)
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def package_versions(names: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    lines = [
        "| " + " | ".join(header.ljust(widths[i]) for i, header in enumerate(headers)) + " |",
        "|" + "|".join("-" * (width + 2) for width in widths) + "|",
    ]
    lines += ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in cells]
    return "\n".join(lines)


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def one_kb_body(seed: str = "") -> str:
    """A message body of exactly 1,000 bytes: the design's '1 KB message'."""
    prefix = '{"event":"order.paid","id":"' + seed + '","pad":"'
    suffix = '"}'
    return prefix + "x" * (1000 - len(prefix) - len(suffix)) + suffix


def one_kb_message(target_url: str, message_id: str) -> dict[str, Any]:
    """The benchmarks' message: a 1 KB body from the development sender to the target's /ok."""
    return {
        "messageId": message_id,
        "senderId": "dev",
        "timestamp": iso_seconds(datetime.now(UTC)),
        "targetUrl": f"{target_url}/ok",
        "body": one_kb_body(message_id),
    }


def spawn_relay_dev(arguments: Sequence[str], home: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`relay dev` in a process of its own, as users run it (from the repository, unbuffered, its
    credentials under `home`), and the list a thread fills with every line it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "relay.cli", "dev", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", ToolVariable.HOME: home},
    )
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, output


def stop_process(process: subprocess.Popen[str]) -> None:
    """Ask a process to end (SIGTERM), and kill it when it has not within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def section_main(description: str, run: Callable[[float], dict[str, Any]], argv: list[str] | None) -> int:
    """One section's command line (`python -m bench.<section> --out FILE`): run it at the bench
    scale and write its results with the machine they were measured on."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = run(bench_scale())
    results["machine"] = machine_info()
    write_json(Path(args.out), results)
    return 0
