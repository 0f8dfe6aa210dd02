"""homesec detector service."""
