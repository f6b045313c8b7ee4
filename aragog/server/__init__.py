"""The HTTP server (``aragog serve``), its Prometheus metrics, and ``aragog bench``."""
