"""`relay status` and `relay events` show a message's whole history, however many pages the API
answers it in (GET /messages/{id} pages a long history with `eventsCursor`)."""

from __future__ import annotations

from typing import Any

from relay.client import ApiAnswer, RelayClient


class PagedApi(RelayClient):
    """GET /messages/{id} as the API answers a history of three pages."""

    PAGES: dict[str | None, dict[str, Any]] = {
        None: {"status": "DELIVERED", "events": [{"type": "REPLAYED"}, {"type": "DELIVERED"}], "eventsCursor": "2"},
        "2": {"status": "DELIVERED", "events": [{"type": "ENQUEUED"}, {"type": "DELIVERED"}], "eventsCursor": "1"},
        "1": {"status": "DELIVERED", "events": [{"type": "RECEIVED"}]},
    }

    def __init__(self) -> None:
        super().__init__("http://relay.invalid", token="t")
        self.asked: list[str | None] = []

    def status(self, message_id: str, events_cursor: str | None = None) -> ApiAnswer:
        self.asked.append(events_cursor)
        return ApiAnswer(200, {"messageId": message_id, **self.PAGES[events_cursor]})


def test_a_paged_history_is_read_to_its_first_event_oldest_first() -> None:
    # Given a message whose history the API answers in three pages
    api = PagedApi()
    # When its status is read with its history
    answer = api.status_with_history("m-1")
    # Then every page was asked for, newest first, and the events are whole and oldest first
    assert api.asked == [None, "2", "1"]
    assert [event["type"] for event in answer.body["events"]] == [
        "RECEIVED",
        "ENQUEUED",
        "DELIVERED",
        "REPLAYED",
        "DELIVERED",
    ]
    assert "eventsCursor" not in answer.body


def test_a_failed_page_is_answered_as_it_is() -> None:
    # Given an API whose earlier page fails
    api = PagedApi()
    api.PAGES = {**PagedApi.PAGES, "2": {}}
    api.status = lambda message_id, events_cursor=None: (  # type: ignore[method-assign]
        ApiAnswer(200, {**PagedApi.PAGES[None]}) if events_cursor is None else ApiAnswer(503, {"error": "x"})
    )
    # When the whole history is read
    answer = api.status_with_history("m-1")
    # Then the failure is what the caller sees (not a partial history taken for a whole one)
    assert answer.status == 503
