"""The message store: every read and conditional write of a message's items.

Layout (one partition per message, everything expires together through `ttl`):
- `sk = C`: the content (target, method, headers, body) as compressed JSON, written once and never
  rewritten, so no later write pays for its size.
- `sk = H`: the head: status, run, attempts, lease and the message's events as a compact list.
  Each change of status is ONE conditional `UpdateItem` that sets the status and appends its event
  together: the history cannot have gaps, and the conditions (run, attempts, results) make a
  retried step find its own earlier write instead of writing twice. Attribute names and event
  codes are short: DynamoDB bills every update by the whole item's size (messages/items.py);
  older events move to overflow items (messages/history.py).

Indexes (keys only: an index entry is written only when its keys change; functions/adapters/
messages/listing.py queries them):
- `bySender` (`spk`/`ssk`): every message once, by sender and acceptance time, written with the
  head and never re-keyed, in SENDER_SHARDS shards per sender (`SENDER#<sender>#<n>`, n from the
  message id: functions/contract/indexes.py sizes them). Listings of every status, and of PENDING,
  DELIVERING, RETRYING and DELIVERED, merge the shards newest first (in-flight messages are
  recent, so they are near the top).
- `byStatus` (`gsi1pk`/`gsi1sk`), sparse: only FAILED, CANCELLED and PAUSED messages (the failure
  path, where a listing must find old ones quickly); also the senders' own items. A PAUSED entry's
  sort key starts with the message's target origin, so a target's paused messages are one key range.
- `due` (`dueShard`/`dueAt`), sparse: messages the reconciler must look at (retries, failed
  enqueues, replays, waits), in DUE_SHARDS shards; never one for a message delivered at its first
  attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from functions.adapters.messages.items import (
    CONTENT_SORT_KEY,
    HEAD_SORT_KEY,
    encode_content,
    encode_event,
    index_sort,
    last_attempt_arn,
    paused_sort,
    sender_shard,
    sender_shard_partition,
    status_partition,
)
from functions.adapters.messages.store import REPLAYABLE_STATUSES, MessageStore
from functions.adapters.messages.table import from_item, is_condition_failure, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.domain.model import (
    IN_FLIGHT_STATUSES,
    UNFINISHED_STATUSES,
    DueEntry,
    Event,
    MessageHead,
    MessageKey,
    Status,
    epoch_ms,
)


class MessageRepository(MessageStore):
    """Every conditional write of a message's items (the reads: MessageStore)."""

    # -- ingest ----------------------------------------------------------------------------------

    def put_content(self, key: MessageKey, message: dict[str, Any], content_hash: str, ttl: int) -> bool:
        """Write the content once; False when it exists with other content (a different message).

        Written before the head, so a head never exists without its content. Never rewritten: a
        twin or a retried step with identical content finds it and goes on.
        """
        item = {"pk": key.partition_key, "sk": CONTENT_SORT_KEY, "ttl": ttl, "h": content_hash}
        try:
            self.table.call(
                "put_item",
                Item={**to_item(item), "z": {"B": encode_content(message)}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            existing: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if existing is None:  # older emulators do not return the item
                existing = self.table.call("get_item", Key=self._key(key, CONTENT_SORT_KEY)).get("Item", {})
            return bool(from_item(existing or {}).get("h") == content_hash)
        return True

    def create_head(
        self,
        key: MessageKey,
        content_hash: str,
        request_id: str,
        accepted_at: datetime,
        ttl: int,
        received: Event,
        due: DueEntry | None = None,
    ) -> bool:
        """The dedup point: a conditional put, so of concurrent twins exactly one wins.

        The head is PENDING (with `due`, SCHEDULED, and in the `due` index under `due.shard` when it
        has one) with its RECEIVED event, and its bySender entry."""
        scheduled: dict[str, Any] = {"nb": due.not_before} if due else {}
        if due is not None and due.shard is not None:
            scheduled.update(dueShard=due.shard, dueAt=due.due_at)
        item = {
            **scheduled,
            "pk": key.partition_key,
            "sk": HEAD_SORT_KEY,
            "s": (Status.SCHEDULED if due else Status.PENDING).value,
            "r": 0,
            "a": 0,
            "acc": epoch_ms(accepted_at),
            "u": epoch_ms(accepted_at),
            "ttl": ttl,
            "h": content_hash,
            "rq": request_id,
            "ev": [encode_event(received)],
            # The one index entry of the success path, written here and never re-keyed; its shard comes
            # from the message id, so the key's value changes with the shard count, not the writes.
            "spk": sender_shard_partition(key.sender_id, sender_shard(key)),
            "ssk": index_sort(key, accepted_at),
        }
        try:
            self.table.call("put_item", Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def record_enqueue_failed(self, key: MessageKey, event: Event, request_id: str, due_at: int) -> None:
        """ENQUEUE_FAILED and a due time (the reconciler re-drives it); once per request, and only
        while the message still waits for its first hand-off (PENDING or SCHEDULED): a send SQS took
        but answered as failed may already have been delivered, and its history must not gain a
        failure after its end, nor its run a due time."""
        update = UpdateBuilder().append_events([event]).assign("ef", request_id)
        update.when_status_in({Status.PENDING, Status.SCHEDULED})
        update.assign("dueAt", due_at).assign("dueShard", key.due_shard)
        ef = update.name("ef")
        update.when(f"(attribute_not_exists({ef}) OR {ef} <> {update.value('ef', request_id)})")
        self._apply(key, update)

    def hand_scheduled_to_reconciler(self, head: MessageHead, due_at: int) -> MessageHead | None:
        """A SCHEDULED message the scheduler queued that was never claimed a re-drive window after its
        time: from the scheduler's shard to the reconciler's, due at `due_at` (the reconciler re-drives
        it); None when it moved on (cancelled, claimed) meanwhile."""
        update = UpdateBuilder().when_run(head.run).when_status_in({Status.SCHEDULED})
        update.when(f"{update.name('nb')} = {update.value('nb', head.not_before)}")
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        return self._apply(head.key, update)

    def set_due(self, key: MessageKey, due_at: int) -> None:
        """Move the time after which the reconciler looks at the message."""
        self._apply(key, UpdateBuilder().assign("dueAt", due_at).assign("dueShard", key.due_shard))

    # -- delivery --------------------------------------------------------------------------------

    def claim(
        self,
        head: MessageHead,
        lease_until: int,
        now: int,
        enqueued: Event | None,
        started: Event | None,
        interrupted: Event | None = None,
        due_at: int | None = None,
        owner: str | None = None,
        attempt_lease_until: int | None = None,
    ) -> MessageHead | None:
        """Take the single delivery lease of the head's run; None when another run holds it or it is over.

        The same write records ENQUEUED (the run's first claim), hands the message to `owner` (the
        fencing token every later write of this delivery must show) and, for an inline first
        attempt, counts the attempt and records ATTEMPT_STARTED (after the result of an interrupted
        one). Refused while an earlier attempt may still be sending. A claim is progress: the
        reconciler's re-drive count starts again.
        """
        update = UpdateBuilder().assign("l", lease_until)
        update.when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_nobody_delivering(now)
        update.when_attempts(head.attempts).remove("rd", "tw")
        if owner is not None:
            update.assign("o", owner)
        if head.status == Status.SCHEDULED and started is None:
            update.assign("s", Status.PENDING.value)  # its time has come; a lane's attempt follows
        events = [event for event in (enqueued, interrupted, started) if event is not None]
        if enqueued is not None:
            update.assign("q", head.run)
        if due_at is not None:
            update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        elif head.not_before is not None and head.due_at is not None:
            # A delayed message's watch (due a re-drive window after its time) ends with its claim,
            # as a message sent at once has none: no reconciler round pays to clear it later.
            update.remove("dueAt", "dueShard")
        if started is not None:
            self._count_attempt(update, head, started, interrupted, attempt_lease_until)
        if events:
            update.append_events(events, last_attempt_arn(head))
        return self._apply(head.key, update)

    @staticmethod
    def _count_attempt(
        update: UpdateBuilder,
        head: MessageHead,
        started: Event,
        interrupted: Event | None,
        attempt_lease_until: int | None,
    ) -> None:
        update.add("a", 1).assign("s", Status.DELIVERING.value).assign("u", epoch_ms(started.at))
        if attempt_lease_until is not None:
            update.assign("al", attempt_lease_until)
        if interrupted is not None:
            update.assign("n", head.attempts)

    def begin_attempt(
        self,
        head: MessageHead,
        started: Event,
        interrupted: Event | None,
        owner: tuple[str, str],
        attempt_lease_until: int,
    ) -> MessageHead | None:
        """Count an attempt and record ATTEMPT_STARTED; None when the run is stale, it was counted or
        another run owns the message.

        `owner` is (the token the run was handed, the run's own token): the first attempt of a run
        takes the message over under its own token, so a second run started under the same name
        (an at-least-once start) is fenced out before it sends.
        """
        update = UpdateBuilder().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_attempts(head.attempts)
        # An unresolved attempt under this owner is this run's own earlier one (its result write
        # failed): the run went on, so it is recorded as interrupted. Other owners wait for `al`.
        update.when_owner(*owner).assign("o", owner[1]).remove("rd")
        self._count_attempt(update, head, started, interrupted, attempt_lease_until)
        update.append_events([e for e in (interrupted, started) if e is not None], last_attempt_arn(head))
        return self._apply(head.key, update)

    def _when_attempt_open(self, update: UpdateBuilder, run: int, attempt: int, owner: str | None) -> UpdateBuilder:
        """The attempt's result is not recorded yet. A cancel that landed while it was in flight does
        not hide it: the result is still recorded (after the CANCELLED event)."""
        results = update.name("n")
        update.when_run(run).when_attempts(attempt)
        if owner is not None:
            update.when_owner(owner)
        update.when_status_in({Status.DELIVERING, Status.CANCELLED})
        return update.when(f"(attribute_not_exists({results}) OR {results} < {update.value('attempt', attempt)})")

    def record_failed_attempt(
        self, key: MessageKey, run: int, failed: Event, retry_reason: str | None, due_at: int, owner: str | None = None
    ) -> MessageHead | None:
        """Record attempt `failed.attempt`'s failure; with `retry_reason`, the message is RETRYING.

        RETRYING gives the message a due time (the lease's end), so the reconciler watches every
        retry. None when the result was already recorded (a retried step) or another run owns it.
        A message cancelled meanwhile stays CANCELLED (its history shows the result).
        """
        assert failed.attempt is not None
        update = self._when_attempt_open(UpdateBuilder(), run, failed.attempt, owner)
        update.assign("n", failed.attempt).assign("u", epoch_ms(failed.at)).append_events([failed]).remove("al")
        if retry_reason is not None:
            # RETRYING only from DELIVERING: a message cancelled meanwhile stays CANCELLED.
            update.when(f"{update.name('s')} = {update.value('delivering', Status.DELIVERING.value)}")
            update.assign("s", Status.RETRYING.value).assign("err", retry_reason)
            update.set_once("dueAt", due_at).set_once("dueShard", key.due_shard)
        result = self._apply(key, update)
        if result is None and retry_reason is not None:
            # Cancelled while the attempt was in flight: record the result, keep CANCELLED.
            return self.record_failed_attempt(key, run, failed, None, due_at, owner)
        return result

    def finish_delivered(
        self, key: MessageKey, run: int, delivered: Event, owner: str | None = None
    ) -> MessageHead | None:
        """DELIVERED with its event; None when the attempt's result is already recorded or another
        run owns the message. The target took it, so a cancel that landed meanwhile is overtaken:
        the history shows CANCELLED, then DELIVERED, and the status says what the target did."""
        assert delivered.attempt is not None
        update = self._when_attempt_open(UpdateBuilder(), run, delivered.attempt, owner)
        update.assign("s", Status.DELIVERED.value).assign("n", delivered.attempt).assign("u", epoch_ms(delivered.at))
        update.append_events([delivered]).remove("l", "al", "dueAt", "dueShard", "gsi1pk", "gsi1sk", "err")
        return self._apply(key, update)

    def finish_failed(
        self, head: MessageHead, reason: str, events: Sequence[Event], owner: tuple[str, ...] = ()
    ) -> MessageHead | None:
        """FAILED with its events (an interrupted attempt's result first); None when already over, or
        when `owner` is given and another run owns the message."""
        at = events[-1].at
        update = UpdateBuilder().when_run(head.run).when_status_in(UNFINISHED_STATUSES)
        if owner:
            update.when_owner(*owner)
        update.assign("s", Status.FAILED.value).assign("err", reason).assign("u", epoch_ms(at)).assign(
            "n", head.attempts
        )
        update.when_attempts(head.attempts)
        update.assign("gsi1pk", status_partition(head.key.sender_id, Status.FAILED))
        update.assign("gsi1sk", f"{epoch_ms(at)}#{head.key.message_id}")
        update.append_events(events).remove("l", "al", "dueAt", "dueShard")
        return self._apply(head.key, update)

    def hand_to_slow_lane(
        self,
        head: MessageHead,
        lease_until: int,
        name: str,
        moved: Event,
        owner: tuple[str, ...] = (),
        new_owner: str | None = None,
    ) -> MessageHead | None:
        """Give the lease, the ownership (`new_owner`: the slow-lane run's token) and the reconciler's
        due time to the slow-lane run `name`; once per run name, and only from the run that owns it."""
        update = UpdateBuilder().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES)
        if owner:
            update.when_owner(*owner)
        slow = update.name("sl")
        update.when(f"(attribute_not_exists({slow}) OR {slow} <> {update.value('sl', name)})")
        update.assign("sl", name).assign("o", new_owner or name).assign("l", lease_until).assign(
            "dueAt", lease_until
        ).assign("dueShard", head.key.due_shard)
        update.append_events([moved])
        return self._apply(head.key, update)

    def release_claim(self, key: MessageKey, run: int, owner: tuple[str, ...] = (), due_at: int | None = None) -> None:
        """Give the lease back (a run that gives up, a crashed inline attempt): only its owner may, and
        with `due_at` the reconciler looks at the message then (a run's end leaves nothing idle)."""
        # Its attempt (if any) has ended too: whoever gives the lease back is no longer sending.
        update = UpdateBuilder().remove("l", "al").when_run(run).when_status_in(IN_FLIGHT_STATUSES)
        if owner:
            update.when_owner(*owner)
        if due_at is not None:
            update.assign("dueAt", due_at).assign("dueShard", key.due_shard)
        self._apply(key, update)

    def hold_while_waiting(self, head: MessageHead, due_at: int, turn_at: int | None = None) -> MessageHead | None:
        """A message waiting for its target's limit (nothing sent): the reconciler leaves it alone until
        `due_at`, since the queue holds it. Waiting is not trouble: it never counts as a re-drive.
        `turn_at`: the turn its target's queue counted it in for (kept until the claim)."""
        update = UpdateBuilder().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES)
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        if turn_at is not None:
            update.assign("tw", turn_at)
        return self._apply(head.key, update)

    # -- operations ------------------------------------------------------------------------------

    def start_replay(
        self,
        head: MessageHead,
        replayed: Event,
        due_at: int,
        statuses: frozenset[Status] = REPLAYABLE_STATUSES,
        expected_sort: str | None = None,
    ) -> MessageHead | None:
        """Begin a new run of a finished message (one of `statuses`); None when it is in another status.

        The run starts with a budget of its own (`ab`: the attempts so far), no owner and no re-drives.
        `expected_sort`: only while its status index sort key is still this one, i.e. it is still
        in the very failure (or cancellation) a bulk replay job matched, not in a later one.
        """
        update = UpdateBuilder().when_run(head.run).when_status_in(statuses)
        if expected_sort is not None:
            update.when(f"{update.name('gsi1sk')} = {update.value('seenSort', expected_sort)}")
        update.assign("s", Status.PENDING.value).add("r", 1).assign("u", epoch_ms(replayed.at)).assign(
            "n", head.attempts
        )
        update.assign("ab", head.attempts).assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        # A replay goes now: a cancelled delayed message's due time no longer holds it back.
        update.append_events([replayed]).remove("l", "al", "o", "rd", "err", "gsi1pk", "gsi1sk", "sl", "nb", "tw")
        return self._apply(head.key, update)

    def cancel(self, head: MessageHead, cancelled: Event) -> MessageHead | None:
        """Stop a message that has not finished; None when it has (or moved on meanwhile).

        An attempt in flight keeps its owner and attempt lease: its result is still recorded."""
        update = UpdateBuilder().when_run(head.run).when_status_in(UNFINISHED_STATUSES)
        update.assign("s", Status.CANCELLED.value).assign("u", epoch_ms(cancelled.at))
        update.assign("gsi1pk", status_partition(head.key.sender_id, Status.CANCELLED))
        update.assign("gsi1sk", f"{epoch_ms(cancelled.at)}#{head.key.message_id}")
        update.append_events([cancelled]).remove("l", "dueAt", "dueShard")
        return self._apply(head.key, update)

    def note_redrive(self, head: MessageHead, redriven: Event, due_at: int, now: int) -> MessageHead | None:
        """Count a reconciler re-drive, push the due time out and record REDRIVEN; None if it moved on.

        The lease is checked again here, not only on the head the reconciler read: a run claimed
        in between keeps its lease (removing it would let a queued duplicate start a second run).
        The owner is cleared: a run that outlived its lease is fenced out of every later write.
        """
        # (a run lease that ends this very second counts as ended, as the reconciler read it)
        update = (
            UpdateBuilder().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_nobody_delivering(now, now + 1)
        )
        redrives = update.name("rd")
        if head.redrives:
            update.when(f"{redrives} = {update.value('redrives', head.redrives)}")
        else:
            update.when(f"attribute_not_exists({redrives})")
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard).add("rd", 1).remove("l", "o")
        update.append_events([redriven])
        return self._apply(head.key, update)

    # -- circuit breaker (functions/services/targeting/target_health.py) ------------------------------------

    def pause(
        self,
        head: MessageHead,
        paused: Event,
        origin: str,
        due_at: int,
        lease_free_at: int | None = None,
        owner: tuple[str, ...] = (),
    ) -> MessageHead | None:
        """PAUSED (its target's circuit is open): attempts kept, lease and ownership given back, listed
        under the target's paused range, due at `due_at` (its expiry or the next probe). None when it
        moved on.

        `lease_free_at`: only when no run holds the lease then (the dispatcher); `owner`: a lane
        pauses only a message it owns.
        """
        update = UpdateBuilder().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_attempts(head.attempts)
        if lease_free_at is not None:
            update.when_nobody_delivering(lease_free_at)
        if owner:
            update.when_owner(*owner)
        update.assign("s", Status.PAUSED.value).assign("u", epoch_ms(paused.at))
        update.assign("gsi1pk", status_partition(head.key.sender_id, Status.PAUSED))
        update.assign("gsi1sk", paused_sort(origin, paused.at, head.key))
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        update.append_events([paused]).remove("l", "o")
        return self._apply(head.key, update)

    def resume(self, head: MessageHead, resumed: Event, due_at: int) -> MessageHead | None:
        """PAUSED -> PENDING with RESUMED, watched by the reconciler until the queue's dispatch claims
        it (like a replay); None when it is not PAUSED any more."""
        update = UpdateBuilder().when_run(head.run).when_status_in({Status.PAUSED})
        update.assign("s", Status.PENDING.value).assign("u", epoch_ms(resumed.at))
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        update.append_events([resumed]).remove("gsi1pk", "gsi1sk", "l", "o", "rd")
        return self._apply(head.key, update)

    def iter_paused(self, sender_id: str, origin: str, page_size: int = 100) -> Iterator[list[MessageHead]]:
        """A target's PAUSED messages, a page of heads at a time (oldest pause first)."""
        for keys in self.indexes.paused_pages(sender_id, origin, page_size):
            heads = [head for head in self.get_heads(keys) if head.status == Status.PAUSED]
            if heads:
                yield heads

    def clear_due(self, key: MessageKey) -> None:
        """Take a finished message off the reconciler's index (a leftover due time)."""
        self._apply(key, UpdateBuilder().remove("dueAt", "dueShard"))
