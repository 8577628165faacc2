"""The pure core of notification: templates, delivery planning and retry transitions.

Imports no faststream, aiokafka, pymongo, httpx or smtplib; time and randomness come in as
arguments, so the same event always plans the same deliveries.
"""
