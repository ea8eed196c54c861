"""The HTTP API of the inspection service: routes, dependencies, error mapping and middleware;
the work itself is the service layer's (`defectlens.inference.service`)."""
