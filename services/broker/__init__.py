"""The bus broker: event proxy, request router, service registry and recorder."""
