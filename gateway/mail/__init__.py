"""Email: IMAP sources that claim every message exactly once, and the outbox replies leave by.

``mime`` and ``threads`` are pure (bytes in, records out).  ``intake`` turns a claimed message
into an interaction, durably; ``imap`` runs one listener per source; ``smtp`` sends the outbox;
``compose`` builds the messages we send; ``runtime`` wires them into the app.
"""
