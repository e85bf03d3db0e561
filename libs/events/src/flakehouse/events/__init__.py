"""The Flakehouse event model: JUnit XML and JSON lines to events, and the Kafka batch codec."""
