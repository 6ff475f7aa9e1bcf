"""Time: the sender's cron schedules (schedules) and the per-minute sweep that hands delayed
messages and schedule firings to the delivery queue (scheduler)."""
