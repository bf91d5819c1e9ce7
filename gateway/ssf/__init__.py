"""The SSF transmitter: users' risk level changes sent to Okta as Security Event Tokens (SPEC 8).

integrations.py  the `/api/zt_risk_scoring/integrations` objects, in the store
events.py        the SET (RFC 8417) for one level change, and the published metadata
                 (`/.well-known/ssf-configuration`, `/cdn-cgi/access/ssf/jwks`)
outbox.py        SETs waiting for delivery, per integration and user, in the store
transmitter.py   the `LevelChangeListener` that fills the outbox, and the worker that
                 empties it into each Okta org (RFC 8935 push)
"""
