"""homesec slack-gateway service."""
