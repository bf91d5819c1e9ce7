"""`gateway demo` only, not the product: the development IdP and the echo upstream."""
