"""The protected-app path: guard, forward-auth, forwarding, the upstream client, WebSocket."""
