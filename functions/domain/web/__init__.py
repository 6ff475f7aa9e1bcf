"""The rules of talking HTTP to the internet: strict JSON (json_text), URL origins (origins), which
addresses a delivery may reach (url_safety, no SSRF) and how a delivery is signed (signing)."""
