"""homesec camera service."""
