"""The line side: stations configured in YAML, their image sources (hot folder, simulated
camera, OpenCV camera) and PLC links (Modbus TCP), all feeding the service layer the same way
the HTTP route does. Depends on `inference.service`, never on `inference.api`."""
