"""The edge_cl daemon: MQTT intake, durable spool, learning loop, metrics and lifecycle."""
