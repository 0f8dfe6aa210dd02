"""homesec core library: settings, MQTT bus, topic contract, metrics, logging."""

__version__ = "0.1.0"
