"""The HTTP routes, one module per resource: inspect, results, models (and stations), health."""
