"""Identity-aware login gateway: Okta sign-in, sessions in Redis, policy, reverse proxy."""

__version__ = "0.1.0"
