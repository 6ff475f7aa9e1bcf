"""The data-access layer of target health: one item per (sender, target origin) in the relay table.

Layout: `pk = TARGET#<senderId>#<origin>`, `sk = HEALTH` (the targets registry keeps its limits
beside it under `sk = LIMITS`). Attributes: `st` state, `f` consecutive failed attempts, `oa`
opened at, `np` next probe at (epoch seconds), `pm` the probe's message id, `pr` failed probes
since it opened. An OPEN or HALF_OPEN target carries a sparse `byStatus` entry
(`gsi1pk = BREAKER#OPEN`, sorted by sender), so the reconciler counts open targets with one query
a round (the `OpenTargets` gauge its alarm watches) and `GET /targets` finds a sender's; a target
that closed while messages were paused carries `gsi1pk = BREAKER#RESUMING` instead, until the
reconciler has re-driven them all. (Not under `TARGETS#`: that prefix and a sender id make the
partition of a sender's limits, and a sender may be called OPEN.)
No item at all means CLOSED with no failures: the common path never writes one. Every write sets
`ttl` a day past the messages' own lifetime, so the item of a target that stopped failing long ago
goes away by itself (an OPEN target's probes keep rewriting it while it has paused messages; were it
to expire anyway, it reads as CLOSED and its paused messages are re-driven, not lost).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from functions.adapters.messages.table import Table, from_item, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.adapters.stores.target_store import target_partition
from functions.contract.key_prefixes import BREAKER_OPEN_PARTITION, BREAKER_RESUMING_PARTITION
from functions.domain.breaker import KNOWN_OPEN_AFTER_SECONDS, BreakerState, TargetHealth

if TYPE_CHECKING:
    from functions.domain.config import Settings

HEALTH_SORT_KEY = "HEALTH"
# How long a health item outlives its last write, past the messages' TTL.
KEEP_AFTER_MESSAGES_SECONDS = 86_400


def _decode(sender_id: str, origin: str, item: dict[str, Any] | None) -> TargetHealth:
    if not item:
        return TargetHealth(sender_id, origin)
    return TargetHealth(
        sender_id=sender_id,
        origin=origin,
        state=BreakerState(item.get("st", BreakerState.CLOSED.value)),
        failures=int(item.get("f", 0)),
        opened_at=int(item["oa"]) if "oa" in item else None,
        next_probe_at=int(item["np"]) if "np" in item else None,
        probe_message=str(item["pm"]) if item.get("pm") else None,
        probes=int(item.get("pr", 0)),
        resuming=item.get("gsi1pk") == BREAKER_RESUMING_PARTITION,
    )


def _listed(update: UpdateBuilder, partition: str, sender_id: str, origin: str) -> UpdateBuilder:
    """In one of the sparse lists of targets (open, or resuming), with what names the target."""
    update.assign("gsi1pk", partition).assign("gsi1sk", f"{sender_id}#{origin}")
    return update.assign("sd", sender_id).assign("o", origin)


class TargetHealthRepository:
    """Reads and conditional writes of health items; every transition is one conditional update."""

    def __init__(self, table_name: str, message_ttl_seconds: int) -> None:
        self.table = Table(table_name)
        self._keep_seconds = message_ttl_seconds + KEEP_AFTER_MESSAGES_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetHealthRepository:
        """The deployment's table, its items kept a day past the messages' TTL."""
        return cls(settings.table_name, settings.ttl_seconds)

    def _key(self, sender_id: str, origin: str) -> dict[str, Any]:
        return to_item({"pk": target_partition(sender_id, origin), "sk": HEALTH_SORT_KEY})

    def _update(
        self, sender_id: str, origin: str, update: UpdateBuilder, must_exist: bool = True
    ) -> TargetHealth | None:
        update.assign("ttl", int(time.time()) + self._keep_seconds)
        item = self.table.update(self._key(sender_id, origin), update, must_exist)
        return None if item is None else _decode(sender_id, origin, item)

    def get(self, sender_id: str, origin: str, consistent: bool = False) -> TargetHealth:
        response = self.table.call("get_item", Key=self._key(sender_id, origin), ConsistentRead=consistent)
        item = response.get("Item")
        return _decode(sender_id, origin, from_item(item) if item else None)

    def add_failure(self, sender_id: str, origin: str) -> TargetHealth:
        """Count one failed attempt (one atomic ADD); the health after it."""
        update = UpdateBuilder().add("f", 1).set_once("st", BreakerState.CLOSED.value)
        health = self._update(sender_id, origin, update, must_exist=False)
        assert health is not None
        return health

    def open(self, opened: TargetHealth, seen: TargetHealth) -> bool:
        """Write `opened` (OPEN) if the target is still as `seen` (the state it was opened from)."""
        update = UpdateBuilder().assign("st", BreakerState.OPEN.value).assign("pr", opened.probes)
        update.assign("np", opened.next_probe_at).assign("oa", opened.opened_at).remove("pm")
        _listed(update, BREAKER_OPEN_PARTITION, opened.sender_id, opened.origin)
        update.when(f"{update.name('st')} = {update.value('seen', seen.state.value)}")
        if seen.probe_message:
            update.when(f"{update.name('pm')} = {update.value('probe', seen.probe_message)}")
        return self._update(opened.sender_id, opened.origin, update) is not None

    def start_probe(self, health: TargetHealth, message_id: str, now: int, deadline: int) -> bool:
        """HALF_OPEN with `message_id` as the one probe, if the probe is due and nobody took it."""
        update = (
            UpdateBuilder().assign("st", BreakerState.HALF_OPEN.value).assign("pm", message_id).assign("np", deadline)
        )
        opened, half = update.value("open", BreakerState.OPEN.value), update.value("half", BreakerState.HALF_OPEN.value)
        update.when(f"{update.name('st')} IN ({opened}, {half})")
        update.when(f"{update.name('np')} <= {update.value('now', now)}")
        return self._update(health.sender_id, health.origin, update) is not None

    def close(self, sender_id: str, origin: str, message_id: str, started_at: int, resuming: bool) -> bool:
        """CLOSED with no failures, from OPEN or HALF_OPEN, by the success of `message_id`'s attempt
        that started at `started_at` (epoch seconds), if that success may close it (as
        TargetHealth.closed_by): it started after the target opened and is the probe, or it started
        KNOWN_OPEN_AFTER_SECONDS after the open. With `resuming`, listed for the reconciler to re-drive
        its paused messages. False when it was CLOSED already or the success is stale."""
        update = UpdateBuilder().assign("st", BreakerState.CLOSED.value).assign("f", 0).remove("np", "pm", "pr", "oa")
        if resuming:
            _listed(update, BREAKER_RESUMING_PARTITION, sender_id, origin)
        else:
            update.remove("gsi1pk", "gsi1sk")
        state, opened_at = update.name("st"), update.name("oa")
        update.when(f"{state} <> {update.value('closed', BreakerState.CLOSED.value)}")
        update.when(f"{opened_at} <= {update.value('started', started_at)}")
        probe = (
            f"({state} = {update.value('half', BreakerState.HALF_OPEN.value)}"
            f" AND {update.name('pm')} = {update.value('probe', message_id)})"
        )
        known = f"{opened_at} <= {update.value('known', started_at - KNOWN_OPEN_AFTER_SECONDS)}"
        update.when(f"({probe} OR {known})")
        return self._update(sender_id, origin, update) is not None

    def force_close(self, sender_id: str, origin: str) -> TargetHealth:
        """Closed by hand (`relay targets resume`): CLOSED whatever it was, listed for resuming."""
        update = UpdateBuilder().assign("st", BreakerState.CLOSED.value).assign("f", 0).remove("np", "pm", "pr", "oa")
        health = self._update(sender_id, origin, _listed(update, BREAKER_RESUMING_PARTITION, sender_id, origin), False)
        assert health is not None
        return health

    def reset_failures(self, sender_id: str, origin: str) -> bool:
        """A success on a CLOSED target that had failures: the run of failures is over."""
        update = UpdateBuilder().assign("f", 0)
        update.when(f"{update.name('st')} = {update.value('closed', BreakerState.CLOSED.value)}")
        update.when(f"{update.name('f')} > {update.value('zero', 0)}")
        return self._update(sender_id, origin, update) is not None

    def finish_resume(self, sender_id: str, origin: str) -> None:
        """Every paused message is re-driven: take the target off the reconciler's list."""
        update = UpdateBuilder().remove("gsi1pk", "gsi1sk")
        update.when(f"{update.name('st')} = {update.value('closed', BreakerState.CLOSED.value)}")
        self._update(sender_id, origin, update)

    def resuming(self) -> list[TargetHealth]:
        """Targets that closed with paused messages still to re-drive (a short list: closes are rare)."""
        return self._listed_in(BREAKER_RESUMING_PARTITION)

    def open_targets(self) -> list[TargetHealth]:
        """Every sender's OPEN and HALF_OPEN targets (a short list, unless many receivers are down)."""
        return [health for health in self._listed_in(BREAKER_OPEN_PARTITION) if health.state != BreakerState.CLOSED]

    def open_of_sender(self, sender_id: str) -> list[TargetHealth]:
        """One sender's OPEN and HALF_OPEN targets."""
        listed = self._listed_in(BREAKER_OPEN_PARTITION, prefix=f"{sender_id}#")
        return [health for health in listed if health.sender_id == sender_id and health.state != BreakerState.CLOSED]

    def get_many(self, sender_id: str, origins: list[str]) -> dict[str, TargetHealth]:
        """The health of each of a sender's targets (no item: CLOSED with no failures), in one batch."""
        keys = [self._key(sender_id, origin) for origin in origins]
        found = {str(item["pk"]): item for item in self.table.batch_get(keys, consistent=False)}
        return {
            origin: _decode(sender_id, origin, found.get(target_partition(sender_id, origin))) for origin in origins
        }

    def _listed_in(self, partition: str, prefix: str | None = None) -> list[TargetHealth]:
        found: list[TargetHealth] = []
        start: dict[str, Any] | None = None
        while True:
            items, start = self.table.query_index(partition, start, prefix)
            found.extend(_decode(str(item["sd"]), str(item["o"]), item) for item in items if "sd" in item)
            if not start:
                return found
