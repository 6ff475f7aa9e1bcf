// The sender's messages in pages, newest first, read from GET /messages.
//
// One stream: the chosen status, or every status when the API lists them all without a `status`
// (capabilities.listsEveryStatus). An API that needs a status is read one stream per status, merged
// by acceptance time; each stream comes in its own order (a FAILED one by failure time), so such a
// merged page is newest first as far as its streams allow.
//
// A position is each stream's unread items and its cursor: a page is read from a position and
// yields the next one, so a page can be read again (refreshed) from where it started.

// GET /messages may answer a page with fewer items than asked, even none, and a cursor: this many
// calls per stream and page at most, so a page is never an unbounded walk.
const MAX_CALLS_PER_STREAM = 10;

export function startPosition(status, capabilities) {
  const statuses = status || capabilities.listsEveryStatus ? [status || null] : capabilities.statuses;
  return statuses.map((streamStatus) => ({ status: streamStatus, items: [], cursor: null, done: false }));
}

async function fill(stream, size, fetchPage) {
  while (!stream.items.length && !stream.done && stream.calls < MAX_CALLS_PER_STREAM) {
    stream.calls += 1;
    const answer = await fetchPage(stream.status, size, stream.cursor);
    stream.items = [...(answer.items || [])];
    stream.cursor = answer.nextCursor || null;
    stream.done = !stream.cursor;
  }
}

// A page of at most `size` messages from `position`: {items, next}, next null at the end.
export async function readPage(position, size, fetchPage) {
  const streams = position.map((stream) => ({ ...stream, items: [...stream.items], calls: 0 }));
  const items = [];
  const seen = new Set();
  while (items.length < size) {
    await Promise.all(streams.map((stream) => fill(stream, size, fetchPage)));
    const live = streams.filter((stream) => stream.items.length);
    if (!live.length) break;
    const newest = live.reduce((best, stream) => (stream.items[0].acceptedAt > best.items[0].acceptedAt ? stream : best));
    const item = newest.items.shift();
    // A message that changed status between two streams' reads is shown once.
    if (!seen.has(item.messageId)) {
      seen.add(item.messageId);
      items.push(item);
    }
  }
  const more = streams.some((stream) => stream.items.length || !stream.done);
  return { items, next: more ? streams : null };
}
