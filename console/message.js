// A message's page: where it stands, what it carries (shown as text, whatever it holds), its
// timeline (every event) and its Step Functions runs, with "Replay" and "Cancel" where its status
// allows. Refreshed while open, so an action's events appear without a reload.

import { api, ApiError } from "./api.js";
import { badge, confirmAction, el, every, facts, replace, table, time } from "./dom.js";
import { href } from "./router.js";

const REFRESH_SECONDS = 2;
// A long history comes in pages (GET /messages/{id}?eventsCursor=...): at most this many are read.
const MAX_HISTORY_PAGES = 50;
const TIMELINE = ["Time", "Event", "Attempt", "Response", "Duration", "Error", "Details"];
// The fields of an event with a column of their own; the others are its details.
const EVENT_COLUMNS = new Set(["type", "at", "attempt", "statusCode", "durationMs", "error", "reason"]);
// The fields of the message shown in their own place; any other the API answers is under "More".
const SHOWN = new Set([
  "messageId", "senderId", "status", "attempts", "run", "acceptedAt", "updatedAt", "expiresAt", "deliveredAt",
  "failedAt", "cancelledAt", "lastError", "redrives", "ttl", "targetUrl", "method", "timestamp", "headers", "body",
  "events", "executions", "eventsCursor",
]);

// The message with its whole history; older pages never change, so each is read once (`earlier`).
async function readMessage(messageId, earlier) {
  const view = await api.message(messageId);
  let events = view.events || [];
  let cursor = view.eventsCursor;
  for (let pages = 0; cursor && pages < MAX_HISTORY_PAGES; pages += 1) {
    if (!earlier.has(cursor)) earlier.set(cursor, await api.message(messageId, cursor));
    const page = earlier.get(cursor);
    events = [...(page.events || []), ...events];
    cursor = page.eventsCursor;
  }
  return { ...view, events };
}

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function details(event) {
  const lines = Object.entries(event).filter(([name]) => !EVENT_COLUMNS.has(name));
  return lines.map(([name, value]) => el("div", { class: "detail" }, `${name}: ${text(value)}`));
}

function timeline(events) {
  const rows = events.map((event) => [
    time(event.at),
    el("span", { class: "event" }, event.type),
    event.attempt ?? "",
    event.statusCode ?? "",
    event.durationMs === undefined ? "" : `${event.durationMs} ms`,
    [event.error, event.reason].filter(Boolean).join(": "),
    details(event),
  ]);
  return table("Every event, oldest first", TIMELINE, rows, "No events.");
}

function runs(executions) {
  const rows = (executions || []).map((run) => [
    run.workflow,
    run.type,
    String(run.run),
    time(run.startedAt),
    /^https:\/\//.test(run.consoleUrl || "")
      ? el("a", { href: run.consoleUrl, target: "_blank", rel: "noopener noreferrer" }, "Open in the Step Functions console")
      : "",
  ]);
  return table("The runs that worked on it", ["Workflow", "Type", "Run", "Started", "Console"], rows, "No runs recorded.");
}

function content(view) {
  const headers = Object.entries(view.headers || {}).map(([name, value]) => [name, text(value)]);
  return [
    facts([["Method", view.method], ["Target URL", view.targetUrl], ["Timestamp", time(view.timestamp)]]),
    table("Headers", ["Name", "Value"], headers, "No headers."),
    el("h3", {}, "Body"),
    view.body === undefined ? el("p", { class: "hint" }, "No body.") : el("pre", { class: "body" }, text(view.body)),
  ];
}

function standing(view) {
  const more = Object.entries(view).filter(([name]) => !SHOWN.has(name)).map(([name, value]) => [name, text(value)]);
  return facts([
    ["Status", badge(view.status)],
    ["Attempts", String(view.attempts ?? 0)],
    ["Run", view.run === undefined ? "" : String(view.run)],
    ["Last error", view.lastError],
    ["Accepted", time(view.acceptedAt)],
    ["Updated", time(view.updatedAt)],
    ["Delivered", view.deliveredAt && time(view.deliveredAt)],
    ["Failed", view.failedAt && time(view.failedAt)],
    ["Cancelled", view.cancelledAt && time(view.cancelledAt)],
    ["Expires", time(view.expiresAt)],
    ["Re-driven", view.redrives === undefined ? "" : String(view.redrives)],
    ...more,
  ]);
}

function section(title, ...children) {
  return el("section", {}, el("h2", {}, title), children);
}

export function openMessage(main, messageId, context) {
  const earlier = new Map();
  const body = el("div", { class: "message" });
  const actions = el("div", { class: "actions" });
  let shown = null;
  let stopped = false;
  replace(main,
    el("p", {}, el("a", { href: href(["messages"]) }, "All messages")),
    el("h1", { tabindex: "-1" }, "Message ", el("code", {}, messageId)),
    actions,
    body);

  async function act(replay) {
    const question = replay
      ? `Replay message ${messageId}? It is delivered again, as a new run.`
      : `Cancel message ${messageId}? It will not be delivered.`;
    if (!(await confirmAction(question, replay ? "Yes, replay it" : "Yes, cancel it"))) return;
    try {
      const answer = await (replay ? api.replay(messageId) : api.cancel(messageId));
      context.notify(replay ? `Replay of ${messageId} started (run ${answer.run}).` : `${messageId} is ${answer.status}.`);
      await load();
    } catch (error) {
      context.fail(error);
    }
  }

  function render(view) {
    const { replayableStatuses, finishedStatuses } = context.capabilities;
    const focused = document.activeElement?.id;
    replace(actions,
      replayableStatuses.includes(view.status) ? el("button", { id: "replay", type: "button", onclick: () => act(true) }, "Replay") : null,
      finishedStatuses.includes(view.status) ? null : el("button", { id: "cancel", type: "button", class: "danger", onclick: () => act(false) }, "Cancel"));
    replace(body,
      section("Status", standing(view)),
      section("Content", content(view)),
      section("Timeline", timeline(view.events)),
      section("Step Functions runs", runs(view.executions)));
    if (focused) document.getElementById(focused)?.focus();
  }

  async function load() {
    if (stopped) return;
    const view = await readMessage(messageId, earlier);
    const json = JSON.stringify(view);
    if (json !== shown && !stopped) {
      shown = json;
      render(view);
    }
  }

  const stopTimer = every(REFRESH_SECONDS, () => refresh());
  const stop = () => {
    stopped = true;
    stopTimer();
  };
  async function refresh() {
    try {
      await load();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        stop(); // nothing to refresh: say so once
        replace(body, el("p", {}, error.message));
        return;
      }
      context.fail(error);
    }
  }
  refresh();
  return stop;
}
