"""Pydantic models at every boundary: requests, events, parsed results."""
