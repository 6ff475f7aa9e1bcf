"""Targets: a sender's per-target delivery limits as the API shows and changes them.

A target is the origin (`scheme://host[:port]`) of a message's targetUrl; it belongs to a sender,
and one sender's targets never affect another's. Items (in the relay table):

- `pk = TARGET#<sender>#<origin>`, `sk = LIMITS`: the limits a sender set (`PUT /targets`); also
  in the sparse `byStatus` index under `TARGETS#<sender>`, so a sender's targets are one query.
  Origin `*` holds the sender's default for every target without limits of its own.
- `pk = TARGET#<sender>#<origin>#B<n>` and `#S<n>`, `sk = FLOW`: the live flow state of a limited
  target, written only for targets with limits: its token bucket as sub-buckets (their number from
  the rate) and its concurrency slots, each a small item under its own partition key, so a target's
  rate and slots spread over partitions and an attempt writes O(1) small items whatever its limits
  (functions/services/targeting/flow_control.py holds them per attempt; functions/adapters/stores/target_store.py
  stores them). A slot is a lease that runs out on its own, so a crashed holder cannot keep it.

Which limits apply: the target's own item, else the sender's `*` item, else the deployment's
defaults (`relay.targets` in cdk.json; null = unlimited). A warm function keeps what it read for
`CONFIG_MAX_AGE_SECONDS` (one read per origin per 30 s): a changed limit takes effect within that
time. A target with no limits costs nothing per attempt: no read, no write.
"""

from __future__ import annotations

import time
from typing import Any

from functions.adapters.stores.target_store import TargetRepository
from functions.domain.exceptions import TargetNotFound
from functions.domain.flow import Share, Target
from functions.domain.web.origins import DEFAULT_ORIGIN, origin_of_id, target_id

__all__ = ["Target", "TargetRepository", "delete_target", "target_views"]


def target_views(repository: TargetRepository, sender_id: str, now_ms: int | None = None) -> list[dict[str, Any]]:
    """`GET /targets`: each target's limits and its live counts (slots in flight, tokens now: the
    sum over its sub-buckets)."""
    targets = repository.of_sender(sender_id)
    flows = repository.flow_snapshots(sender_id, [t for t in targets if t.origin != DEFAULT_ORIGIN])
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    views = []
    for target in targets:
        view = target.to_dict()
        snapshot = flows.get(target.origin)
        view["inFlight"] = snapshot.in_flight(now_ms) if snapshot else 0
        if target.rate_per_second is not None:
            tokens = snapshot.tokens(Share.of(target), now_ms * 1000) if snapshot else target.burst
            view["tokens"] = round(tokens, 3)
        else:
            view["tokens"] = None
        views.append(view)
    return views


def delete_target(repository: TargetRepository, sender_id: str, raw_id: str) -> dict[str, Any]:
    """`DELETE /targets/{id}`: the id as `GET /targets` lists it (`target_id`), or `*`. Its flow
    items go with its limits."""
    try:
        origin = origin_of_id(raw_id)
    except ValueError:
        raise TargetNotFound(f"No target '{raw_id[:200]}'.") from None
    if not repository.delete(sender_id, origin):
        raise TargetNotFound(f"No target '{origin}'.")
    return {"id": target_id(origin), "origin": origin, "deleted": True}
