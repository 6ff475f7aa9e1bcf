"""The web console (issue 19), as a new user walks it in headless Chromium against `relay dev`."""

from __future__ import annotations

import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import Any

from playwright.sync_api import expect

from relay.client import RelayClient
from tests.support import dev_message, wait_for, wait_for_circuit, wait_until_terminal

TOKEN_KEY = "relay.console.token"
TIMELINE = "Every event, oldest first"
LIMITED_ORIGIN = "https://hooks.example.com"


def send(client: RelayClient, message: dict[str, Any]) -> str:
    answer = client.send(message)
    assert answer.status == 202, answer.body
    return str(message["messageId"])


def row_of(page: Any, message_id: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=message_id, exact=True))


def event_types(client: RelayClient, message_id: str) -> list[str]:
    return [event["type"] for event in client.status_with_history(message_id).body["events"]]


class _Markup(HTMLParser):
    """The page's tags and attributes, to find anything inline."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, dict(answer.headers), answer.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8")


def test_console_is_one_page_with_a_strict_content_security_policy_and_no_inline_code(relay: Any) -> None:
    # Given the console's page, as a browser asks for it
    status, headers, html = fetch(f"{relay.url}/console")
    # Then it answers 200 with a Content-Security-Policy that allows this origin's files only
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"):
        assert directive in policy
    assert "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    # And the page has no inline script, style or event handler, and loads only its own files
    markup = _Markup()
    markup.feed(html)
    assert [tag for tag, _ in markup.tags if tag == "style"] == []
    assert all(attributes.get("src") for tag, attributes in markup.tags if tag == "script")
    assert not [
        name for _, attributes in markup.tags for name in attributes if name.startswith("on") or name == "style"
    ]
    linked = [
        attributes.get("src") or attributes.get("href") for tag, attributes in markup.tags if tag in ("script", "link")
    ]
    for path in linked:
        assert str(path).startswith("console/")
        asset_status, asset_headers, _ = fetch(f"{relay.url}/{path}")
        assert asset_status == 200 and "Content-Security-Policy" in asset_headers
    # And an unknown file is 404, and /console/ leads to /console (its links are relative to it)
    assert fetch(f"{relay.url}/console/nothing.js")[0] == 404
    assert fetch(f"{relay.url}/console/a/b")[0] == 404
    assert fetch(f"{relay.url}/console/")[::2] == (200, html)


def test_a_new_users_walk_sign_in_list_filter_detail_and_replay(
    console: Any, client: RelayClient, targets: Any
) -> None:
    # Given a delivered message and a failed one (its target answers 404)
    delivered = send(client, dev_message(f"{targets.good.url}/ok"))
    failed = send(client, dev_message(f"{targets.good.url}/missing"))
    for message_id in (delivered, failed):
        wait_for(client, message_id)
    page = console.page
    # When the user signs in with the API token
    console.sign_in()
    # Then both are listed with their statuses
    expect(row_of(page, delivered)).to_contain_text("DELIVERED")
    expect(row_of(page, failed)).to_contain_text("FAILED")
    # When they choose FAILED in the "Status" select
    page.get_by_label("Status", exact=True).select_option("FAILED")
    # Then the delivered one is hidden
    expect(row_of(page, failed)).to_be_visible()
    expect(row_of(page, delivered)).to_have_count(0)
    # When they open the failed message
    page.evaluate("window.walkMarker = 'not reloaded'")
    page.get_by_role("link", name=failed, exact=True).click()
    # Then its timeline shows the attempt, the failure and the target's 404
    timeline = page.get_by_role("table", name=TIMELINE)
    expect(timeline).to_contain_text("ATTEMPT_STARTED")
    expect(timeline.get_by_role("row").filter(has_text="ATTEMPT_FAILED")).to_contain_text("404")
    expect(timeline.get_by_role("row").filter(has_text="HTTP 404")).to_contain_text("FAILED")
    # When they click "Replay" and confirm
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("button", name="Yes, replay it").click()
    # Then a REPLAYED event shows without a reload, and the API shows it too
    expect(timeline).to_contain_text("REPLAYED")
    assert page.evaluate("window.walkMarker") == "not reloaded"
    assert "REPLAYED" in event_types(client, failed)
    # And nothing went wrong in the browser, and nothing was asked of another origin
    assert console.errors == []
    assert console.outside_requests() == []


def test_the_token_stays_in_the_tab_goes_as_a_bearer_only_and_sign_out_forgets_it(console: Any) -> None:
    # Given a signed-in tab
    page = console.page
    console.sign_in()
    page.get_by_role("link", name="Targets").click()
    expect(page.get_by_role("heading", name="Targets", exact=True)).to_be_visible()
    # Then the token is in this tab's sessionStorage only: no cookie, no localStorage, in no URL
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == console.token
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    assert not [request.url for request in console.requests if console.token in request.url]
    # And every API call carries it as a bearer
    api_calls = [request for request in console.requests if "/console" not in request.url]
    assert api_calls
    assert {request.headers.get("authorization") for request in api_calls} == {f"Bearer {console.token}"}
    # When they sign out
    page.get_by_role("button", name="Sign out").click()
    # Then the token is forgotten, also after a reload
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert console.errors == []


def test_a_token_the_api_refuses_signs_nobody_in(console: Any) -> None:
    # Given the sign-in form
    page = console.page
    console.open()
    # When a wrong token is given
    page.get_by_label("API token").fill("rly_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    # Then the console says so and keeps nothing
    expect(page.get_by_role("alert")).to_contain_text("That token was not accepted.")
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


def test_the_list_pages_refreshes_while_open_and_finds_a_message_by_id(
    console: Any, client: RelayClient, targets: Any
) -> None:
    # Given more delivered messages than one page holds (25)
    messages = [dev_message(f"{targets.good.url}/ok") for _ in range(30)]
    answer = client.send_batch(messages)
    assert answer.status == 200, answer.body
    for message in messages:
        wait_until_terminal(client, message)
    page = console.page
    console.sign_in()
    # When DELIVERED is chosen
    page.get_by_label("Status", exact=True).select_option("DELIVERED")
    body_rows = page.locator("tbody tr")
    # Then a page holds 25, newest first, and "Older" leads to the rest
    expect(body_rows).to_have_count(25)
    first_link = body_rows.first.get_by_role("link")
    first_id = first_link.inner_text()
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_text("Page 2", exact=True)).to_be_visible()
    expect(first_link).not_to_have_text(first_id)
    page.get_by_role("button", name="Newer").click()
    expect(first_link).to_have_text(first_id)
    # When another message is delivered while the list is open
    newest = send(client, dev_message(f"{targets.good.url}/ok"))
    wait_for(client, newest)
    # Then it appears at the top without a reload
    expect(body_rows.first).to_contain_text(newest)
    # When its id is searched for
    page.get_by_label("Message id").fill(newest)
    page.get_by_role("button", name="Find").click()
    # Then its page opens
    expect(page.get_by_role("heading", name=f"Message {newest}")).to_be_visible()
    assert console.errors == []


def test_cancel_stops_an_unfinished_message_after_a_confirmation(
    console: Any, client: RelayClient, targets: Any
) -> None:
    # Given a message whose target keeps failing (retrying, then paused when its circuit opens)
    message_id = send(client, dev_message(f"{targets.down.url}/fail"))
    page = console.page
    console.sign_in()
    # When its page is opened and "Cancel" is clicked, then confirmed
    console.open(f"#/messages/{message_id}")
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("button", name="Yes, cancel it").click()
    # Then it is CANCELLED, the timeline shows it, and only "Replay" is left
    expect(page.get_by_role("table", name=TIMELINE)).to_contain_text("CANCELLED")
    expect(page.get_by_role("button", name="Replay", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    assert client.status(message_id).body["status"] == "CANCELLED"
    assert console.errors == []


def test_targets_limits_circuit_resume_and_bulk_replay(console: Any, client: RelayClient, targets: Any) -> None:
    # Given a target with limits, and another whose circuit opened (3 failed attempts)
    assert client.put_target(LIMITED_ORIGIN, 5, 2).ok
    failing = [send(client, dev_message(f"{targets.down.url}/fail")) for _ in range(3)]
    wait_for_circuit(client, targets.down.url, "OPEN")
    for message_id in failing:  # nothing to re-drive once it is resumed: it stays CLOSED
        client.cancel(message_id)
    # And a failed message for the bulk replay
    failed = send(client, dev_message(f"{targets.good.url}/missing"))
    wait_for(client, failed)
    page = console.page
    console.sign_in()
    # When the targets page is opened
    page.get_by_role("link", name="Targets").click()
    # Then it shows the limited origin with its limits and circuit, and the open one
    limited = page.get_by_role("row").filter(has_text=LIMITED_ORIGIN)
    expect(limited).to_contain_text("5")
    expect(limited).to_contain_text("CLOSED")
    down = page.get_by_role("row").filter(has_text=targets.down.url)
    expect(down).to_contain_text("OPEN")
    # When the open one is resumed (and confirmed)
    down.get_by_role("button", name="Resume").click()
    page.get_by_role("button", name="Yes, resume it").click()
    # Then it is CLOSED
    expect(page.get_by_role("status")).to_contain_text(f"{targets.down.url} is CLOSED")
    assert client.target_health(targets.down.url).body["state"] == "CLOSED"
    # When the limited origin's rate is edited
    limited.get_by_role("button", name="Edit limits").click()
    page.get_by_label("Rate per second (empty: no limit)").fill("7")
    page.get_by_role("button", name="Save limits").click()
    # Then the table and the API show the new limit
    expect(limited).to_contain_text("7")
    listed = {item["origin"]: item for item in client.targets().body["items"]}
    assert listed[LIMITED_ORIGIN]["ratePerSecond"] == 7 and listed[LIMITED_ORIGIN]["maxConcurrency"] == 2
    # When any origin's circuit is asked for
    page.locator("#circuit-origin").fill(targets.down.url)
    page.get_by_role("button", name="Show circuit").click()
    expect(page.locator(".circuit")).to_contain_text("CLOSED")
    # When the failed messages of the good target are replayed in bulk
    page.get_by_label("Messages in status").select_option("FAILED")
    page.locator("#replay-origin").fill(targets.good.url)
    page.get_by_role("button", name="Start replay").click()
    # Then the job's progress shows until it ends, and the message was replayed by it
    expect(page.locator(".job")).to_contain_text("SUCCEEDED")
    assert "REPLAYED" in event_types(client, failed)
    assert console.errors == []


def test_what_a_sender_sent_is_shown_as_text_never_as_markup(console: Any, client: RelayClient, targets: Any) -> None:
    # Given a message whose header and body are HTML that would run script if it were parsed
    payload = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
    message_id = send(
        client,
        dev_message(f"{targets.good.url}/ok", headers={"X-Payload": payload}, body=f"<b>{payload}</b>"),
    )
    wait_for(client, message_id)
    page = console.page
    console.sign_in()
    # When its page is opened
    console.open(f"#/messages/{message_id}")
    # Then the header and the body are shown as the very text that was sent
    expect(page.locator("pre.body")).to_have_text(f"<b>{payload}</b>")
    expect(page.get_by_role("cell", name=payload, exact=True)).to_be_visible()
    # And no element of theirs exists, nothing ran, nothing was fetched for them
    assert page.locator("main img, main script, main b").count() == 0
    assert page.title() == "Relay console"
    assert console.errors == []
    assert console.outside_requests() == []
    assert not [request.url for request in console.requests if request.url.endswith("/x")]


def test_usable_by_keyboard_labelled_and_readable_on_a_phone(console: Any, client: RelayClient, targets: Any) -> None:
    # Given a delivered message
    message_id = send(client, dev_message(f"{targets.good.url}/ok"))
    wait_for(client, message_id)
    page = console.page
    # When the user signs in with the keyboard only (the token field has the focus)
    console.open()
    expect(page.get_by_label("API token")).to_be_focused()
    page.keyboard.type(console.token)
    page.keyboard.press("Enter")
    # Then the list shows, every control has a label, and times show UTC on hover
    expect(row_of(page, message_id)).to_be_visible()
    unlabelled = "[...document.querySelectorAll('input, select')].filter((control) => !control.labels.length).length"
    assert page.evaluate(unlabelled) == 0
    assert page.locator("tbody time").first.get_attribute("title").endswith("(UTC)")
    # And a status is a word as well as a colour
    expect(row_of(page, message_id).locator(".badge")).to_have_text("DELIVERED")
    # When the targets page is reached by the keyboard
    page.get_by_role("link", name="Targets").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Targets", exact=True)).to_be_visible()
    assert page.evaluate(unlabelled) == 0
    # Then at a phone's width nothing overflows the page (wide tables scroll on their own)
    page.set_viewport_size({"width": 390, "height": 844})
    for route in ("#/targets", "#/messages", f"#/messages/{message_id}"):
        console.open(route)
        page.get_by_role("heading", level=1).wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, route
    assert console.errors == []
