"""Per-protocol session views: the only place per-connection state lives."""
