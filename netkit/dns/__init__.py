"""Per-network embedded DNS: `server` is the long-lived resolver process, `supervisor` starts,
checks and stops it for the CLI (import-light)."""
