"""Device-discovery backends: router web API, Linux neighbour table, MQTT trackers."""
