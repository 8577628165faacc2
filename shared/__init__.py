"""Code every Baton service shares: the definition language, settings and adapters."""
