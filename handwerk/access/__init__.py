"""Access control: API keys (stored in the database), the authenticator with its modes, and
token-bucket rate limits. HTTP-free: ``handwerk.api.guards`` adapts it to FastAPI, and
``handwerk.cli.keys`` manages keys. Imports settings and the database layer only.
"""
