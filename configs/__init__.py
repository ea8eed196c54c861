"""Training recipes and station configs (YAML), shipped as package data."""
