"""Ship an official Datadog API-based integration from a Django project."""

__version__ = "0.1.0"
