"""homesec uploader service."""
