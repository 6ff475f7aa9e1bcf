"""The parts of the message store (functions/adapters/repository.py, `MessageRepository`).

- table.py: the table itself (calls, batch reads, byStatus reads, item (de)serialisation), which
  every store of the table uses;
- items.py: how a message's items are stored (head, events, content) and the keys they sit under;
- updates.py: `UpdateBuilder`, the conditional update expressions of every store;
- history.py: overflow items and reading a message's history a page at a time;
- listing.py: the index queries (bySender, byStatus, due) and the senders' activity per minute;
- merge.py: reading a listing newest first across its index shards, and its cursor.
"""
