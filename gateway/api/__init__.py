"""The REST APIs: the agent's /api/v2/me and the partners' /api/v2/interactions."""
