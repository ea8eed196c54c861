"""The HTTP routes, one module per resource: inspect, results, models (and stations),
deliveries, reports, health."""
