"""Helpers shared by the backend, browser and deployed-environment tests."""
