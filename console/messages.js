// Messages: the sender's messages newest first, a "Status" filter, a search by message id, pages,
// refreshed while open. Each id links to the message's page (message.js).

import { api } from "./api.js";
import { badge, el, every, replace, table, time } from "./dom.js";
import { readPage, startPosition } from "./listing.js";
import { href } from "./router.js";

export { openMessage } from "./message.js";

const PAGE_SIZE = 25;
const REFRESH_SECONDS = 5;
const COLUMNS = ["Message id", "Status", "Attempts", "Target", "Accepted", "Updated"];

function row(message) {
  return [
    el("a", { href: href(["messages", message.messageId]) }, message.messageId),
    [badge(message.status), message.lastError ? el("div", { class: "hint" }, message.lastError) : null],
    String(message.attempts ?? 0),
    el("span", { class: "target", title: message.targetUrl }, `${message.method || "POST"} ${message.targetUrl || ""}`),
    time(message.acceptedAt),
    time(message.updatedAt),
  ];
}

function filters(status, context) {
  const select = el("select", { id: "status-filter", name: "status" },
    el("option", { value: "" }, "All statuses"),
    context.capabilities.statuses.map((name) => el("option", { value: name, selected: name === status }, name)));
  select.addEventListener("change", () => {
    location.hash = href(["messages"], { status: select.value });
  });
  const search = el("input", { id: "message-search", name: "messageId", type: "search", autocomplete: "off", spellcheck: "false" });
  const form = el("form", { class: "filters", role: "search" },
    el("div", { class: "field" }, el("label", { for: "status-filter" }, "Status"), select),
    el("div", { class: "field" }, el("label", { for: "message-search" }, "Message id"), search),
    el("button", { type: "submit" }, "Find"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const messageId = search.value.trim();
    if (messageId) location.hash = href(["messages", messageId]);
  });
  return form;
}

export function openMessages(main, route, context) {
  const status = context.capabilities.statuses.includes(route.params.get("status")) ? route.params.get("status") : "";
  const positions = [startPosition(status, context.capabilities)];
  let page = 0;
  let shown = null;
  const list = el("div", { class: "listing" });
  const newer = el("button", { type: "button", disabled: true }, "Newer");
  const older = el("button", { type: "button", disabled: true }, "Older");
  const pageLabel = el("span", { class: "page-label" }, "Page 1");
  const refreshed = el("p", { class: "hint" });
  replace(main,
    el("h1", { tabindex: "-1" }, "Messages"),
    filters(status, context),
    refreshed,
    list,
    el("nav", { class: "pager", "aria-label": "Pages" }, newer, pageLabel, older));

  async function load() {
    const fetchPage = (streamStatus, limit, cursor) => api.listMessages(streamStatus, limit, cursor);
    const current = page;
    const result = await readPage(positions[current], PAGE_SIZE, fetchPage);
    if (current !== page) return; // the reader moved to another page meanwhile
    positions.length = page + 1;
    if (result.next) positions.push(result.next);
    const text = JSON.stringify(result.items);
    if (text !== shown) {
      shown = text;
      const caption = `${status || "All"} messages, newest first (page ${page + 1})`;
      const empty = status ? `No ${status} messages.` : "No messages yet.";
      replace(list, table(caption, COLUMNS, result.items.map(row), empty));
    }
    newer.disabled = page === 0;
    older.disabled = !result.next;
    pageLabel.textContent = `Page ${page + 1}`;
    refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_SECONDS} s.`;
  }
  const refresh = () => load().catch((error) => context.fail(error));
  newer.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    refresh();
  });
  older.addEventListener("click", () => {
    if (positions[page + 1]) page += 1;
    refresh();
  });
  refresh();
  return every(REFRESH_SECONDS, refresh);
}
