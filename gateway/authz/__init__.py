"""Authorization: app matching, policy evaluation, service tokens, the app token."""
