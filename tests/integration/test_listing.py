"""Listing a sender's messages from the sharded bySender index (functions/adapters/repository.py,
`list_by_status`): pages merge the shards newest first, fill up to `limit` across a status filter,
stop at a read budget with a cursor that goes on, and never list a message twice or skip one.

Runs against the embedded AWS's table (moto), with messages stored through the repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.messages import store as store_module
from functions.adapters.messages.items import sender_shard
from functions.adapters.repository import MessageRepository
from functions.contract.indexes import SENDER_SHARDS
from functions.domain.config import get_settings
from functions.domain.model import Event, EventType, MessageKey, Status
from tests.support import force_stored_status

SENDER = "lister"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def repository(local_aws: Any) -> MessageRepository:
    return MessageRepository(get_settings().table_name)


def store(repository: MessageRepository, count: int, status: Status = Status.PENDING, first: int = 0) -> list[str]:
    """`count` messages accepted one millisecond apart (from START + `first` ms), in `status`."""
    ids = []
    for n in range(first, first + count):
        key, accepted = MessageKey(SENDER, f"m-{n:04d}"), START + timedelta(milliseconds=n)
        ttl = int((accepted + timedelta(days=30)).timestamp())
        assert repository.put_content(key, {"messageId": key.message_id, "targetUrl": "https://x.test/"}, "h", ttl)
        assert repository.create_head(key, "h", "rq", accepted, ttl, Event(EventType.RECEIVED, accepted, 0))
        if status != Status.PENDING:
            force_stored_status(SENDER, key.message_id, status.value)
        ids.append(key.message_id)
    return ids


def walk(
    repository: MessageRepository, status: Status | None, limit: int
) -> Iterator[tuple[list[str], dict[str, Any] | None]]:
    """Every page of a listing, following its cursors to the end."""
    cursor: dict[str, Any] | None = None
    while True:
        messages, cursor = repository.list_by_status(SENDER, status, limit, cursor)
        yield [message.head.key.message_id for message in messages], cursor
        if cursor is None:
            return


def test_a_filtered_page_holds_limit_items_when_that_many_exist(repository: MessageRepository) -> None:
    # Given 4 delivered messages, then 12 newer ones still pending, spread over the sender's shards
    delivered = store(repository, 4, Status.DELIVERED)
    pending = store(repository, 12, first=4)
    assert len({sender_shard(MessageKey(SENDER, message_id)) for message_id in delivered + pending}) > 1
    # When the sender lists DELIVERED three at a time
    first, cursor = repository.list_by_status(SENDER, Status.DELIVERED, 3, None)
    # Then the first page holds three, the newest first, and the next one the last
    assert first and [message.head.key.message_id for message in first] == delivered[::-1][:3]
    assert cursor is not None
    rest, end = repository.list_by_status(SENDER, Status.DELIVERED, 3, cursor)
    assert [message.head.key.message_id for message in rest] == delivered[:1]
    assert end is None or repository.list_by_status(SENDER, Status.DELIVERED, 3, end)[0] == []


def test_paging_every_status_across_shards_lists_each_message_once_newest_first(
    repository: MessageRepository,
) -> None:
    # Given 41 messages in two statuses, on every shard of the sender
    ids = store(repository, 20) + store(repository, 21, Status.DELIVERED, first=20)
    assert {sender_shard(MessageKey(SENDER, message_id)) for message_id in ids} == set(range(SENDER_SHARDS))
    # When every status is listed seven at a time
    pages = [page for page, _ in walk(repository, None, 7)]
    # Then every page but the last is full, and the pages together are every message once, newest first
    assert all(len(page) == 7 for page in pages[:-1])
    assert [message_id for page in pages for message_id in page] == ids[::-1]
    # And a filtered listing in pages of 4 gives exactly the messages in that status, in order
    listed = [message_id for page, _ in walk(repository, Status.PENDING, 4) for message_id in page]
    assert listed == ids[:20][::-1]


def test_a_rare_status_stops_at_the_read_budget_and_its_cursor_goes_on(
    repository: MessageRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one delivered message under 30 newer pending ones, and a read budget of 8 heads a page
    delivered = store(repository, 1, Status.DELIVERED)
    store(repository, 30, first=1)
    monkeypatch.setattr(store_module, "LISTING_READ_BUDGET", 8)
    # When DELIVERED is listed
    pages = list(walk(repository, Status.DELIVERED, 5))
    # Then the first pages are cut short by the budget, each with a cursor, and following them
    # finds the delivered message once, after about 31 / 8 pages of reading
    assert pages[0] == ([], pages[0][1]) and pages[0][1] is not None
    assert [message_id for page, _ in pages for message_id in page] == delivered
    assert 4 <= len(pages) <= 5


def test_a_cursor_continues_only_its_own_listing(repository: MessageRepository) -> None:
    # Given a cursor of the sender's PENDING listing
    store(repository, 6)
    _, cursor = repository.list_by_status(SENDER, Status.PENDING, 2, None)
    assert cursor is not None
    # When it is given to another status's listing, another sender's, or altered
    for status, sender in ((Status.DELIVERED, SENDER), (None, SENDER), (Status.PENDING, "other")):
        with pytest.raises(ValueError):
            repository.list_by_status(sender, status, 2, cursor)
    for altered in ({**cursor, "p": cursor["p"][:-1]}, {**cursor, "d": [SENDER_SHARDS]}, {**cursor, "x": 1}):
        with pytest.raises(ValueError):
            repository.list_by_status(SENDER, Status.PENDING, 2, altered)
    # Then the listing it came from goes on
    assert len(repository.list_by_status(SENDER, Status.PENDING, 2, cursor)[0]) == 2
