"""Agents and partners: who may log in, with which queues and capacity, and partner tokens."""
