"""The notification service: work-item and run events in, email / chat / Kafka deliveries out."""
