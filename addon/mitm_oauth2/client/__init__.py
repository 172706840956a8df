"""The token client: token requests, client authentication and discovery, over httpx (the only
layer that speaks HTTP to authorization servers)."""
