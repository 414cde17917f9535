"""Interactions: the state machine, routing, the wire format, the store and the service."""
