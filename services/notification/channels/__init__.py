"""Delivery channels: adapters that hand a planned delivery to an SMTP server or a chat webhook."""
