"""ragserver: a self-hosted knowledge server for AI coding assistants."""

__version__ = "0.1.0"
