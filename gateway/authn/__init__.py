"""Authentication: identity providers, the sign-in flow, the IdP test page, the sign-in cap."""
