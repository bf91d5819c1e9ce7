"""The HTTP edge every route shares: cookies, who the peer is, pages, the gateway's handlers."""
