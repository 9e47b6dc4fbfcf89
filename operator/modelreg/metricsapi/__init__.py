"""The custom metrics API server (custom.metrics.k8s.io) for autoscaling on in-flight requests."""
