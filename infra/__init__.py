"""Infrastructure: the embedded Kafka and MongoDB servers, topics, and deployment files."""
