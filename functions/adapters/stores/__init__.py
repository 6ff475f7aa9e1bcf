"""The relay table's other items, one store each: senders and tokens, target limits and flow state,
target health, bulk replay jobs, cron schedules and notification settings (messages themselves are
functions/adapters/repository.py over functions/adapters/messages/)."""
