"""The Flask settings page."""
