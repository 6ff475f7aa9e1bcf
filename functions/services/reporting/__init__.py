"""What Relay says about outcomes: callbacks after DELIVERED or FAILED (outcomes), a sender's
operational notifications (notifications), both sent as Relay messages of its own (emit)."""
