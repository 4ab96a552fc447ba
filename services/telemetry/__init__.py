"""Telemetry: bus events and service metrics to MQTT, Prometheus and a live dashboard."""
