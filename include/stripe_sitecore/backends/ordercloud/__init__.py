"""Sitecore OrderCloud as a backend: its client, hook, operations and report reader."""
