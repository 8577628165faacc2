"""The trigger service: definitions, record-change subscriptions, starting runs."""
