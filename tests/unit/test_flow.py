"""Flow control's math and rules on a clock of the test's own: sub-buckets and their shares, the
expected turn of a waiting taker, retries before fresh takers, the rate held exactly, slots.

FlowControl runs here against tests/support.MemoryFlowStore (the store's conditional writes, in
memory); tests/integration/test_targets_flow.py runs it against the embedded AWS.
"""

from __future__ import annotations

import random

import pytest

from functions.domain.flow import (
    RETRY_MARK_SECONDS,
    SLOT_PROBES,
    SLOT_WAIT_SECONDS,
    SUB_BUCKET_PERMITS_PER_SECOND,
    Bucket,
    FlowSnapshot,
    Permit,
    Share,
    Target,
    Wait,
    max_permits_per_second,
    slots_to_probe,
    sub_bucket_count,
)
from functions.services.targeting.flow_control import FlowControl
from relay.cli import peak_per_second
from tests.support import MemoryFlowStore

ORIGIN = "https://a.example"
START = 1_000_000.0  # seconds since the epoch: the test clock's first reading


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _flow(store: MemoryFlowStore, clock: Clock, lease_seconds: float = 30) -> FlowControl:
    return FlowControl(store, Target("*"), lease_seconds=lease_seconds, clock=clock)  # type: ignore[arg-type]


def _limited(rate: float | None = None, concurrency: int | None = None) -> tuple[MemoryFlowStore, Clock, FlowControl]:
    store, clock = MemoryFlowStore(Target(ORIGIN, rate, concurrency)), Clock()
    return store, clock, _flow(store, clock)


@pytest.mark.parametrize(
    ("rate", "count"), [(0.001, 1), (1, 1), (50, 1), (50.01, 2), (120, 3), (1_000, 20), (10_000, 200)]
)
def test_a_bucket_has_one_sub_bucket_per_fifty_permits_a_second(rate: float, count: int) -> None:
    assert SUB_BUCKET_PERMITS_PER_SECOND == 50
    assert sub_bucket_count(rate) == count


@pytest.mark.parametrize("rate", [0.5, 2.0, 50.0, 75.0, 120.0, 999.0, 10_000.0])
def test_the_sub_buckets_share_the_rate_and_the_burst_exactly_with_a_token_each(rate: float) -> None:
    # Given a target's rate (its burst: one second's worth, at least one token)
    target = Target(ORIGIN, rate)
    share = Share.of(target)
    # Then its sub-buckets hold the rate and the burst between them, each at least one token
    assert share.count * share.rate == pytest.approx(rate)
    assert share.count * share.burst == pytest.approx(target.burst)
    assert share.burst >= 1
    # And one target can take far past the API's largest rate in principle (200 items at 1,000 WCU/s)
    assert max_permits_per_second(10_000) == 200_000


def test_a_new_bucket_is_full_then_empties_then_tells_each_waiter_its_turn() -> None:
    # Given a target of 2/s (burst 2) nobody used yet
    _, clock, flow = _limited(rate=2.0)
    # When two permits are taken at once, then three more takers ask
    assert [isinstance(flow.acquire("alpha", ORIGIN), Permit) for _ in range(2)] == [True, True]
    waits = [flow.acquire("alpha", ORIGIN) for _ in range(3)]
    # Then each is told its own turn: after the next token and the takers counted before it
    assert [w.seconds for w in waits if isinstance(w, Wait)] == pytest.approx([0.5, 1.0, 1.5])
    assert [w.whole_seconds for w in waits if isinstance(w, Wait)] == [1, 1, 2]
    # And at the first one's turn there is a token for it
    clock.now += 0.5
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)


def test_a_waiter_s_turn_counts_the_waiters_still_ahead_of_it() -> None:
    # Given a drained 2/s bucket with four takers counted in (turns at 0.5, 1, 1.5 and 2 s)
    _, clock, flow = _limited(rate=2.0)
    for _ in range(6):
        flow.acquire("alpha", ORIGIN)
    # When another asks a quarter of a second later, and another once the first four had their turns
    clock.now += 0.25
    sooner = flow.acquire("alpha", ORIGIN)
    clock.now += 2.25
    later = [flow.acquire("alpha", ORIGIN) for _ in range(3)]
    # Then the first waits behind the four (its turn at 2.5 s); the next find the queue gone (nobody
    # came back): the two tokens there, then the next token's time (half a second)
    assert isinstance(sooner, Wait) and sooner.seconds == pytest.approx(2.25)
    assert [isinstance(answer, Permit) for answer in later] == [True, True, False]
    assert isinstance(later[2], Wait) and later[2].seconds == pytest.approx(0.5)


def test_a_waiting_retry_gets_the_next_token_before_a_fresh_taker() -> None:
    # Given a drained 5/s bucket (burst 5) and a retry that had to wait
    store, clock, flow = _limited(rate=5.0)
    for _ in range(5):
        flow.acquire("alpha", ORIGIN)
    retry = flow.acquire("alpha", ORIGIN, retry=True, home="m-1")
    assert isinstance(retry, Wait) and retry.seconds == pytest.approx(0.2)
    assert "mark_retry" in store.calls
    # When a token came back and both ask
    clock.now += 0.2
    fresh = flow.acquire("alpha", ORIGIN)
    again = flow.acquire("alpha", ORIGIN, retry=True, home="m-1")
    # Then the fresh taker leaves it for the retry (and is told its turn after it), the retry takes it
    assert isinstance(fresh, Wait) and fresh.seconds == pytest.approx(0.2)
    assert isinstance(again, Permit)
    # And with the mark spent, fresh takers take the next tokens again
    clock.now += 0.4
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)


def test_a_retry_mark_holds_a_token_only_until_it_runs_out() -> None:
    # Given a drained 5/s bucket and a retry that waited and never came back
    _, clock, flow = _limited(rate=5.0)
    for _ in range(5):
        flow.acquire("alpha", ORIGIN)
    flow.acquire("alpha", ORIGIN, retry=True, home="m-1")
    # When fresh takers ask once the bucket refilled, and again after the mark ran out
    clock.now += 1.0
    refilled = [isinstance(flow.acquire("alpha", ORIGIN), Permit) for _ in range(5)]
    clock.now += RETRY_MARK_SECONDS
    later = [isinstance(flow.acquire("alpha", ORIGIN), Permit) for _ in range(5)]
    # Then they took all but the token set aside for the retry, and later all five
    assert refilled == [True] * 4 + [False]
    assert later == [True] * 5


def test_a_one_token_bucket_sets_nothing_aside() -> None:
    # Given a target of 1/s (one token) drained, and a retry that has to wait
    store, clock, flow = _limited(rate=1.0)
    flow.acquire("alpha", ORIGIN)
    assert isinstance(flow.acquire("alpha", ORIGIN, retry=True, home="m-1"), Wait)
    # Then it leaves no mark (holding the only token for it would stop the target), and the next
    # token goes to whoever asks first
    assert "mark_retry" not in store.calls
    clock.now += 1.0
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)


@pytest.mark.parametrize("rate", [3.0, 120.0])
def test_the_rate_holds_exactly_whoever_takes(rate: float) -> None:
    # Given a target, and takers asking twice as often as its rate for ten seconds: fresh ones and
    # retries, at random moments
    rng = random.Random(7)
    _, clock, flow = _limited(rate=rate)
    granted: list[float] = []
    for moment in sorted(rng.uniform(0, 10) for _ in range(int(rate * 20))):
        clock.now = START + moment
        retry = rng.random() < 0.3
        if isinstance(flow.acquire("alpha", ORIGIN, retry=retry, home=f"m-{rng.randrange(50)}"), Permit):
            granted.append(moment)
    # Then no second ever held more than the rate plus the burst, and in all they took the rate
    # (plus the burst they started with) within a few percent
    assert peak_per_second(granted) <= 2 * rate
    assert rate * 10 * 0.9 <= len(granted) <= rate * 10 + rate


def test_a_slot_is_held_until_given_back_or_its_lease_runs_out() -> None:
    # Given a target allowing two attempts in flight, with leases of 30 s
    store, clock, flow = _limited(concurrency=2)
    first, second = flow.acquire("alpha", ORIGIN), flow.acquire("alpha", ORIGIN)
    assert isinstance(first, Permit) and isinstance(second, Permit)
    # When a third asks, it waits; when the first gives its slot back, it goes
    third = flow.acquire("alpha", ORIGIN)
    assert isinstance(third, Wait) and third.seconds == SLOT_WAIT_SECONDS
    flow.release(first)
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)
    # And a holder that crashed (never gave its slot back) holds it only until its lease ran out,
    # for every process (one that never saw it held, and this one)
    elsewhere = _flow(store, clock)
    assert isinstance(elsewhere.acquire("alpha", ORIGIN), Wait)
    clock.now += 30.001
    assert isinstance(elsewhere.acquire("alpha", ORIGIN), Permit)
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)


def test_a_large_cap_writes_one_slot_per_attempt_and_tries_a_few_before_it_waits() -> None:
    # Given a target allowing 1,000 attempts in flight, and slots_to_probe's choice
    store, _, flow = _limited(concurrency=1_000)
    # When an attempt takes a slot and gives it back, it wrote one slot item and gave that one back
    permit = flow.acquire("alpha", ORIGIN)
    flow.release(permit)
    assert store.calls == ["get_with_default", "take_slot", "release_slot"]
    # And a taker tries SLOT_PROBES of a large cap at random, every slot of a small one, never its own
    assert sorted(slots_to_probe(5, {1}, lambda free, n: free[:n])) == [0, 2, 3, 4]
    probed = slots_to_probe(1_000, {3}, lambda free, n: random.sample(free, n))
    assert len(set(probed)) == SLOT_PROBES and 3 not in probed


def test_a_token_taken_for_an_attempt_with_no_slot_is_given_back() -> None:
    # Given a target of 10/s and one attempt in flight at most, held
    store, _, flow = _limited(rate=10.0, concurrency=1)
    held = flow.acquire("alpha", ORIGIN)
    assert isinstance(held, Permit)
    # When another asks, it waits for the slot, and the token it took goes back to the bucket
    assert isinstance(flow.acquire("alpha", ORIGIN), Wait)
    assert "give_back" in store.calls
    assert store.buckets[0].tokens(Share.of(store.targets[ORIGIN]), int(START * 1_000_000)) == pytest.approx(9.0)


def test_a_target_without_limits_costs_no_flow_item() -> None:
    # Given a target with no limits
    store, _, flow = _limited()
    # When a hundred attempts ask
    for _ in range(100):
        flow.release(flow.acquire("alpha", ORIGIN))
    # Then the limits were read once, and no flow item read or written
    assert store.calls == ["get_with_default"]


def test_a_listing_sums_the_sub_buckets_and_counts_the_live_slots() -> None:
    # Given a 120/s target's three sub-buckets (one never written, one drained, one half full) and slots
    share = Share.of(Target(ORIGIN, 120.0))
    now_us = 10_000_000
    snapshot = FlowSnapshot(
        (None, Bucket(full_at_us=now_us + 1_000_000), Bucket(full_at_us=now_us + 500_000)), (0, 9_000, 11_000, 12_000)
    )
    # Then the tokens are the sum (40 + 0 + 20), and in flight are the slots whose lease runs on
    assert snapshot.tokens(share, now_us) == pytest.approx(60.0)
    assert snapshot.in_flight(now_us // 1000) == 2


def test_a_taker_back_at_its_turn_without_a_token_is_not_counted_in_again() -> None:
    # Given a drained 2/s bucket with three fresh takers counted in (turns at 0.5, 1 and 1.5 s)
    _, clock, flow = _limited(rate=2.0)
    for _ in range(5):
        flow.acquire("alpha", ORIGIN)
    # When the first comes back at its turn but another took the token first
    clock.now += 0.5
    assert isinstance(flow.acquire("alpha", ORIGIN), Permit)
    back = flow.acquire("alpha", ORIGIN, waited_turn=True)
    # Then it is told the next token's time, not a place at the back of the queue
    assert isinstance(back, Wait) and back.seconds == pytest.approx(0.5)
    # And a newcomer still queues behind the two still waiting (turns at 1 and 1.5 s)
    newcomer = flow.acquire("alpha", ORIGIN)
    assert isinstance(newcomer, Wait) and newcomer.seconds == pytest.approx(1.5)


def test_a_waiter_counted_into_the_queue_is_told_so_and_one_back_at_its_turn_is_not() -> None:
    # Given a drained 2/s bucket
    _, _, flow = _limited(rate=2.0)
    assert [isinstance(flow.acquire("alpha", ORIGIN), Permit) for _ in range(2)] == [True, True]
    # When a fresh taker waits, and one back from its turn finds no token either
    counted = flow.acquire("alpha", ORIGIN)
    back = flow.acquire("alpha", ORIGIN, waited_turn=True)
    # Then the first holds a place in the target's queue (its message keeps that turn), the second does not
    assert isinstance(counted, Wait) and counted.counted
    assert isinstance(back, Wait) and not back.counted
