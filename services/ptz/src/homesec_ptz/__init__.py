"""homesec ptz service."""
