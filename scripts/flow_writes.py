"""What flow control writes per attempt, measured against the embedded AWS (moto): calls, write units
(each write billed by the larger of the item before and after it, per started KB; a failed condition
too) and item sizes, for a target with maxConcurrency 1,000; and what one target's flow items allow
per second. Not a test: it prints numbers for issue 20's capacity model.

Run it on any checkout, so the same script measures the code before and after a change:

    PYTHONPATH=<checkout> .venv/bin/python <this file> [--contention]
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from functions.adapters.messages.table import Table
from functions.adapters.stores.target_store import TargetRepository
from functions.contract.key_prefixes import TARGET_PREFIX
from functions.domain.flow import Permit, Target
from relay.local.runtime import LocalRelay

try:  # after issue 20: the flow control has a module of its own
    from functions.services.targeting.flow_control import FlowControl
except ImportError:  # before
    from functions.services.targeting.targets import FlowControl  # type: ignore[attr-defined,no-redef]

WRITES = ("update_item", "put_item", "delete_item")
SENDER = "measure"


def _value_bytes(value: dict[str, Any]) -> int:
    """DynamoDB's size of an attribute value (the documented rules, close enough for billing)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "").lstrip("0") or "0") / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_bytes(v) + 1 for v in inner)
    return len(json.dumps(inner))


def item_bytes(item: dict[str, Any] | None) -> int:
    return sum(len(name.encode()) + _value_bytes(value) for name, value in (item or {}).items())


class Meter:
    """Counts every call a Table makes, and the write units and item sizes of its writes."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.write_units = 0
        self.largest_item = 0
        self.on = False
        self._lock = threading.Lock()

    def install(self) -> None:
        call, batch_get = Table.call, Table.batch_get
        meter = self

        def counted_call(table: Table, operation: str, **kwargs: Any) -> Any:
            key = kwargs["Key"] if "Key" in kwargs else _key(kwargs.get("Item"))
            # Only target items: the relay's own workers (the reconciler) run meanwhile.
            if not meter.on or not key or not key["pk"]["S"].startswith(TARGET_PREFIX):
                return call(table, operation, **kwargs)
            if operation not in WRITES:
                meter.count(operation, 0, 0)
                return call(table, operation, **kwargs)
            before = item_bytes(_raw(table, key))
            try:
                return call(table, operation, **kwargs)
            finally:
                after = item_bytes(_raw(table, key))
                meter.count(operation, max(1, math.ceil(max(before, after) / 1024)), max(before, after))

        def counted_batch_get(table: Table, keys: list[dict[str, Any]], consistent: bool) -> Any:
            if meter.on and keys and keys[0]["pk"]["S"].startswith(TARGET_PREFIX):
                meter.count("batch_get_item", 0, 0)
            return batch_get(table, keys, consistent)

        Table.call = counted_call  # type: ignore[method-assign,assignment]
        Table.batch_get = counted_batch_get  # type: ignore[method-assign,assignment]

    def count(self, operation: str, units: int, size: int) -> None:
        with self._lock:
            self.calls[operation] += 1
            self.write_units += units
            self.largest_item = max(self.largest_item, size)

    def reset(self) -> None:
        self.calls, self.write_units, self.largest_item = Counter(), 0, 0


def _key(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"pk": item["pk"], "sk": item["sk"]} if item else None


def _raw(table: Table, key: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = table.client.get_item(TableName=table.table_name, Key=key, ConsistentRead=True).get(
        "Item"
    )
    return found


def _summary(meter: Meter) -> dict[str, Any]:
    return {
        "calls": dict(meter.calls),
        "writes": sum(meter.calls[op] for op in WRITES),
        "write_units": meter.write_units,
        "largest_item_bytes": meter.largest_item,
    }


def one_attempt(meter: Meter, flow: Any, origin: str, held: int) -> dict[str, Any]:
    """One attempt's acquire and release while `held` other attempts hold slots (the limits are read first)."""
    flow.limits(SENDER, origin)
    holders = [flow.acquire(SENDER, origin) for _ in range(held)]
    assert all(isinstance(permit, Permit) for permit in holders)
    meter.reset()
    meter.on = True
    permit = flow.acquire(SENDER, origin)
    assert isinstance(permit, Permit)
    flow.release(permit)
    meter.on = False
    for holder in holders:
        flow.release(holder)
    return _summary(meter)


def one_wait(meter: Meter, flow: Any, origin: str) -> dict[str, Any]:
    """What a taker that must wait writes: the bucket drained, one more asks (then again, at once)."""
    flow.limits(SENDER, origin)
    while isinstance(flow.acquire(SENDER, origin), Permit):
        pass
    meter.reset()
    meter.on = True
    answers = [flow.acquire(SENDER, origin) for _ in range(2)]
    meter.on = False
    return {**_summary(meter), "waits_seconds": [round(getattr(answer, "seconds", 0.0), 3) for answer in answers]}


def contention(meter: Meter, repository: TargetRepository, rate: float, seconds: float = 4.0) -> dict[str, Any]:
    """Ten takers in five "Lambdas" asking a target of `rate`/s as fast as they can: writes and
    write units per permit (lost races included), and permits per second (moto-bound)."""
    origin = f"https://contended-{int(rate)}.example"
    repository.put(SENDER, Target(origin, rate_per_second=rate, max_concurrency=1_000))
    flows = [FlowControl(repository, Target("*"), 30, max_age_seconds=0.0) for _ in range(5)]
    granted = [0]
    lock = threading.Lock()
    start = time.monotonic()

    def taker(number: int) -> None:
        while time.monotonic() - start < seconds:
            permit = flows[number % 5].acquire(SENDER, origin)
            if isinstance(permit, Permit):
                with lock:
                    granted[0] += 1
                flows[number % 5].release(permit)
            else:
                time.sleep(0.005)

    meter.reset()
    meter.on = True
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(taker, range(10)))
    meter.on = False
    writes = sum(meter.calls[op] for op in WRITES)
    return {
        "rate": rate,
        "permits": granted[0],
        "permits_per_second": round(granted[0] / seconds, 1),
        "writes_per_permit": round(writes / max(1, granted[0]), 2),
        "write_units_per_permit": round(meter.write_units / max(1, granted[0]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contention", action="store_true", help="also ten takers against one target (slow)")
    args = parser.parse_args()
    meter = Meter()
    meter.install()
    results: dict[str, Any] = {}
    with LocalRelay(port=0) as relay:
        assert relay.local is not None
        repository = TargetRepository(relay.local.table_name)
        for name, limits in {
            "concurrency_1000": Target("https://c.example", max_concurrency=1_000),
            "rate_1000_concurrency_1000": Target("https://rc.example", rate_per_second=1_000.0, max_concurrency=1_000),
        }.items():
            repository.put(SENDER, limits)
            for held in (0, 500, 999):
                # Leases long enough to outlast the measurement (holders are taken one by one).
                flow = FlowControl(repository, Target("*"), 3_600)
                results[f"{name}_with_{held}_in_flight"] = one_attempt(meter, flow, limits.origin, held)
        waiting = Target("https://w.example", rate_per_second=2.0)
        repository.put(SENDER, waiting)
        flow = FlowControl(repository, Target("*"), 30)
        results["rate_2_two_takers_that_wait"] = one_wait(meter, flow, waiting.origin)
        if args.contention:
            results["contention_rate_100"] = contention(meter, repository, 100.0)
    try:
        from functions.domain.flow import (
            PARTITION_WRITE_UNITS_PER_SECOND,
            SUB_BUCKET_PERMITS_PER_SECOND,
            max_permits_per_second,
            sub_bucket_count,
        )

        results["per_target"] = {
            "sub_bucket_permits_per_second": SUB_BUCKET_PERMITS_PER_SECOND,
            "sub_buckets_at_10000_per_second": sub_bucket_count(10_000),
            "configured_max_permits_per_second": sub_bucket_count(10_000) * SUB_BUCKET_PERMITS_PER_SECOND,
            "partition_write_units_per_second": PARTITION_WRITE_UNITS_PER_SECOND,
            "max_permits_per_second_in_principle": max_permits_per_second(10_000),
        }
    except ImportError:
        pass  # before: one item per target
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
