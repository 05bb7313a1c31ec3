"""Canvalo backend: the FastAPI service."""
