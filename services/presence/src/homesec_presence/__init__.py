"""homesec presence service."""
