"""Per-target limits across processes: the DynamoDB-backed sub-buckets and slots, and the API.

FlowControl instances stand for concurrent Lambdas (each has its own caches); they share only the
table of an embedded AWS. Then `relay dev` in-process with a concurrency-limited target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.adapters.stores.target_store import TargetRepository
from functions.domain.flow import Permit, Share, Target, Wait
from functions.services.targeting.flow_control import FlowControl
from functions.services.targeting.targets import target_views
from relay.cli import peak_per_second
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import delivery_relay, wait_until_terminal


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with delivery_relay() as running:
        yield running


@pytest.fixture(scope="module")
def repository(relay: LocalRelay) -> TargetRepository:
    assert relay.local is not None
    return TargetRepository(relay.local.table_name)


def _flow(repository: TargetRepository) -> FlowControl:
    return FlowControl(repository, Target("*"), lease_seconds=30, max_age_seconds=0.0)


def test_two_flow_controls_never_hold_more_than_one_slot(repository: TargetRepository) -> None:
    # Given a target allowing one attempt in flight, and two "Lambdas" each with four threads
    origin = "https://one-at-a-time.example"
    repository.put("alpha", Target(origin, max_concurrency=1))
    flows = [_flow(repository), _flow(repository)]
    holding, peak, granted = [0], [0], [0]
    lock = threading.Lock()

    def deliverer(flow: FlowControl) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            permit = flow.acquire("alpha", origin)
            if not isinstance(permit, Permit):
                time.sleep(0.01)
                continue
            with lock:
                holding[0] += 1
                peak[0] = max(peak[0], holding[0])
                granted[0] += 1
            time.sleep(0.02)
            with lock:
                holding[0] -= 1
            flow.release(permit)

    # When they all deliver as fast as they can for two seconds
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(deliverer, [flows[i % 2] for i in range(8)]))
    # Then never more than one held a slot, and the slot was handed on many times
    assert peak[0] == 1
    assert granted[0] >= 10
    limits = Target(origin, max_concurrency=1)
    assert repository.flow_snapshots("alpha", [limits])[origin].in_flight(int(time.time() * 1000)) == 0


def test_the_bucket_holds_across_two_flow_controls(repository: TargetRepository) -> None:
    # Given a target limited to 5/s (burst 5), and two "Lambdas"
    origin = "https://five-a-second.example"
    repository.put("alpha", Target(origin, rate_per_second=5.0))
    flows = [_flow(repository), _flow(repository)]
    granted: list[float] = []
    lock = threading.Lock()

    def deliverer(flow: FlowControl) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if isinstance(flow.acquire("alpha", origin), Permit):
                with lock:
                    granted.append(time.monotonic())
            else:
                time.sleep(0.01)

    # When both take permits as fast as they can for two seconds
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(deliverer, [flows[i % 2] for i in range(4)]))
    # Then they got the burst plus the rate, not more (and close to it)
    assert 5 + 5 * 2 - 3 <= len(granted) <= 5 + 5 * 2 + 1


class Rounds:
    """A clock of the test's own that moves one step each time every taker reached `next_round`:
    the takers race each other for real within a round (concurrent conditional writes), while the
    limits are measured against this clock, not against how fast the embedded AWS answers."""

    def __init__(self, takers: int, step_seconds: float) -> None:
        self.now = time.time()
        self.start = self.now
        self.step = step_seconds
        self._barrier = threading.Barrier(takers, action=self._advance)

    def _advance(self) -> None:
        self.now += self.step

    def __call__(self) -> float:
        return self.now

    def elapsed(self) -> float:
        return self.now - self.start

    def next_round(self) -> None:
        self._barrier.wait(timeout=120)


def test_fifty_takers_across_five_flow_controls_hold_the_rate_within_ten_percent(
    repository: TargetRepository,
) -> None:
    # Given a target of 100/s (two sub-buckets, each its own partition key), and five "Lambdas" with
    # ten takers each, every taker a message of its own that asks again at the turn it was told
    origin = "https://a-hundred-a-second.example"
    repository.put("alpha", Target(origin, rate_per_second=100.0))
    assert Share.of(Target(origin, 100.0)).count == 2
    rounds = Rounds(takers=50, step_seconds=0.01)
    flows = [FlowControl(repository, Target("*"), 30, clock=rounds, max_age_seconds=3_600) for _ in range(5)]
    granted: list[float] = []
    lock = threading.Lock()

    def taker(number: int) -> None:
        turn = 0.0
        while rounds.elapsed() < 4.0:
            if rounds.elapsed() >= turn:
                answer = flows[number % 5].acquire("alpha", origin, home=f"message-{number}")
                if isinstance(answer, Permit):
                    with lock:
                        granted.append(rounds.elapsed())
                else:
                    turn = rounds.elapsed() + answer.seconds
            rounds.next_round()

    # When the fifty take permits for four seconds of that clock, asking together every 10 ms
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(taker, range(50)))
    # Then after the first second (the burst of 100 spent), the permits granted over the next three
    # came at the rate, within 10%; and no second held more than the rate plus the burst
    steady = [moment for moment in granted if 1.0 <= moment < 4.0]
    assert 0.9 <= len(steady) / (100.0 * 3) <= 1.1, len(steady)
    assert peak_per_second(granted) <= 100 + 100


def test_many_threads_never_hold_more_slots_than_the_cap_and_reach_it(repository: TargetRepository) -> None:
    # Given a target allowing five attempts in flight, and three "Lambdas" with ten threads each
    origin = "https://five-at-a-time.example"
    repository.put("alpha", Target(origin, max_concurrency=5))
    rounds = Rounds(takers=30, step_seconds=1.0)
    flows = [FlowControl(repository, Target("*"), 30, clock=rounds, max_age_seconds=3_600) for _ in range(3)]
    holding: list[list[Permit]] = [[] for _ in range(10)]
    lock = threading.Lock()

    def deliverer(number: int) -> None:
        for round_number in range(10):
            permit = flows[number % 3].acquire("alpha", origin)
            if isinstance(permit, Permit):
                with lock:
                    holding[round_number].append(permit)
            rounds.next_round()  # every attempt of the round holds its slot until all asked
            flows[number % 3].release(permit)
            rounds.next_round()

    # When all thirty ask at once, ten times, each holding what it got until all had asked
    with ThreadPoolExecutor(max_workers=30) as pool:
        list(pool.map(deliverer, range(30)))
    # Then each time exactly five held a slot (never more, and a free slot always found), five
    # different slots, and every slot was given back
    assert [len(held) for held in holding] == [5] * 10
    assert all(len({permit.slot for permit in held}) == 5 for held in holding)
    snapshot = repository.flow_snapshots("alpha", [Target(origin, max_concurrency=5)])[origin]
    assert snapshot.in_flight(int(rounds() * 1000)) == 0


def test_a_slot_never_given_back_frees_itself_when_its_lease_runs_out(repository: TargetRepository) -> None:
    # Given a target allowing one attempt in flight, and a holder that crashes (never releases)
    origin = "https://crashing-holder.example"
    repository.put("alpha", Target(origin, max_concurrency=1))
    now = [time.time()]
    crashed, other = (FlowControl(repository, Target("*"), 30, clock=lambda: now[0]) for _ in range(2))
    assert isinstance(crashed.acquire("alpha", origin), Permit)
    # When another process asks while the lease runs, and after it ran out
    during = other.acquire("alpha", origin)
    now[0] += 30.5
    after = other.acquire("alpha", origin)
    # Then it waits, then takes the slot
    assert isinstance(during, Wait)
    assert isinstance(after, Permit)


def test_a_waiting_retry_takes_the_next_token_before_a_waiting_fresh_taker(repository: TargetRepository) -> None:
    # Given a target of 5/s drained by one "Lambda", and a retry (a lane's attempt) in another that waits
    origin = "https://retries-first.example"
    repository.put("alpha", Target(origin, rate_per_second=5.0))
    now = [time.time()]
    dispatcher, lane = (FlowControl(repository, Target("*"), 30, clock=lambda: now[0]) for _ in range(2))
    assert [isinstance(dispatcher.acquire("alpha", origin), Permit) for _ in range(5)] == [True] * 5
    assert isinstance(lane.acquire("alpha", origin, retry=True, home="message-1"), Wait)
    # When a token came back and a fresh taker asks before the retry comes back
    now[0] += 0.25
    fresh = dispatcher.acquire("alpha", origin)
    retry = lane.acquire("alpha", origin, retry=True, home="message-1")
    # Then the fresh one waits (its turn after the retry's), and the retry takes the token
    assert isinstance(fresh, Wait) and fresh.seconds > 0
    assert isinstance(retry, Permit)


def test_a_limited_target_lists_its_live_counts_and_its_flow_items_go_with_it(repository: TargetRepository) -> None:
    # Given a target of 120/s (three sub-buckets) and two attempts in flight of at most 1,000, at one moment
    origin = "https://spread.example"
    repository.put("bravo", Target(origin, rate_per_second=120.0, max_concurrency=1_000))
    now = time.time()
    flow = FlowControl(repository, Target("*"), 30, clock=lambda: now)
    permits = [flow.acquire("bravo", origin) for _ in range(12)]
    assert all(isinstance(permit, Permit) for permit in permits)
    for permit in permits[2:]:
        flow.release(permit)
    # Then the listing shows the tokens left over all sub-buckets, and the two slots held
    [view] = target_views(repository, "bravo", now_ms=int(now * 1000))
    assert view["inFlight"] == 2
    assert view["tokens"] == pytest.approx(108, abs=0.2)  # the listing reads the clock in ms
    # And when the target is deleted, none of its flow items is left
    assert repository.delete("bravo", origin)
    items = repository.table.client.scan(TableName=repository.table.table_name)["Items"]
    assert not [item for item in items if item["pk"]["S"].startswith(f"TARGET#bravo#{origin}")]


def test_an_unlimited_target_costs_no_request_per_attempt(repository: TargetRepository) -> None:
    # Given a flow control with its 30 s cache, and a target without limits
    repository_of_one = TargetRepository(repository.table.table_name)
    calls: list[str] = []
    table = repository_of_one.table
    call, batch_get = table.call, table.batch_get

    def counting_call(operation: str, **kwargs: Any) -> Any:
        calls.append(operation)
        return call(operation, **kwargs)

    def counting_batch_get(keys: list[dict[str, Any]], consistent: bool) -> list[dict[str, Any]]:
        calls.append("batch_get_item")
        return batch_get(keys, consistent)

    table.call = counting_call  # type: ignore[method-assign]
    table.batch_get = counting_batch_get  # type: ignore[method-assign]
    flow = FlowControl(repository_of_one, Target("*"), lease_seconds=30)
    # When a hundred attempts ask for a permit
    for _ in range(100):
        flow.release(flow.acquire("alpha", "https://free.example"))
    # Then the limits were read once (the target's and the sender's default in one BatchGetItem), nothing written
    assert calls == ["batch_get_item"]
    assert flow.limits("alpha", "https://free.example").unlimited


def test_a_sender_sees_only_its_own_targets_over_the_api(relay: LocalRelay) -> None:
    assert relay.local is not None
    from relay.admin import SenderAdmin

    admin = SenderAdmin(relay.local.table_name)
    carol = RelayClient(relay.url, token=admin.create("carol")["token"])
    dave = RelayClient(relay.url, token=admin.create("dave")["token"])
    # Given carol limits a target
    answer = carol.put_target("HTTPS://Hooks.Example.com:443/", 2, 1)
    assert answer.status == 200, answer.body
    assert answer.body["origin"] == "https://hooks.example.com"
    # Then carol lists it with its counts, dave does not see it and cannot delete it
    listed = carol.targets().body["items"]
    assert [(t["origin"], t["ratePerSecond"], t["maxConcurrency"], t["inFlight"]) for t in listed] == [
        ("https://hooks.example.com", 2, 1, 0)
    ]
    assert listed[0]["tokens"] == 2
    assert listed[0]["health"] == {"origin": "https://hooks.example.com", "state": "CLOSED", "consecutiveFailures": 0}
    assert dave.targets().body["items"] == []
    assert dave.delete_target("https://hooks.example.com").status == 404
    # And a bad body names its field
    bad = carol.request("PUT", "/targets", b'{"origin": "https://x.example/path", "ratePerSecond": 0}')
    assert bad.status == 400
    assert [d["path"] for d in bad.body["error"]["details"]] == ["$.ratePerSecond"]
    path = carol.request("PUT", "/targets", b'{"origin": "https://x.example/path", "ratePerSecond": 1}')
    assert path.status == 400 and [d["path"] for d in path.body["error"]["details"]] == ["$.origin"]
    # When carol deletes it by the id it is listed with, it is gone
    assert listed[0]["id"] == "https:hooks.example.com"
    assert carol.request("DELETE", "/targets/https:hooks.example.com").status == 200
    assert carol.targets().body["items"] == []
    assert carol.delete_target("https://hooks.example.com").status == 404


def test_a_concurrency_limited_target_receives_one_request_at_a_time(relay: LocalRelay) -> None:
    # Given a target that takes 200 ms per request, limited to one in flight
    client = RelayClient(relay.url, token=relay.dev_token)
    with TargetServer() as slow:
        assert client.put_target(slow.url, None, 1).ok
        # When six messages go to it at once
        messages = [make_message(senderId="dev", targetUrl=f"{slow.url}/slow/200") for _ in range(6)]
        for message in messages:
            assert client.send(message).status == 202
        records = [wait_until_terminal(client, message, timeout=60) for message in messages]
        # Then all are delivered at the first attempt, and the target never had two at once
        assert [(r["status"], r["attempts"]) for r in records] == [("DELIVERED", 1)] * 6
        assert slow.peak_in_flight == 1
        assert len(slow.received) == 6


def test_the_target_s_own_limits_win_over_the_sender_default_and_the_deployment_s(
    repository: TargetRepository,
) -> None:
    # Given a deployment default of 100/s, a sender default (origin *) of 3/s, and one target of its own
    repository.put("bravo", Target("*", rate_per_second=3.0))
    repository.put("bravo", Target("https://own.example", max_concurrency=2))
    flow = FlowControl(repository, Target("*", rate_per_second=100.0), lease_seconds=30)
    # Then a target of its own keeps exactly its settings, the others take the sender's default,
    # and another sender takes the deployment's
    assert (
        flow.limits("bravo", "https://own.example").rate_per_second,
        flow.limits("bravo", "https://own.example").max_concurrency,
    ) == (None, 2)
    assert flow.limits("bravo", "https://other.example").rate_per_second == 3.0
    assert flow.limits("charlie", "https://other.example").rate_per_second == 100.0
    assert flow.limits("bravo", "https://other.example").origin == "https://other.example"
