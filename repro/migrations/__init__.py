"""One-off migrations of what the harness wrote under an older layout (run once, kept for others' checkouts)."""
