"""deviceflow: an OAuth 2.0 Device Flow proxy for the Enedis Data Connect API."""

__version__ = "0.1.0"
