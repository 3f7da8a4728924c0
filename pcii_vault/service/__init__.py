"""The vault as an HTTPS service."""
