"""What the gateway keeps: sessions, the catalog, the user registry, and the store under them."""
