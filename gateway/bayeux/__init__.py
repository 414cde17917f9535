"""The Bayeux server: the hub, delivery to held connects and websockets, engines, transports.

* :mod:`.hub` drives the pure protocol core (``protocol/``) against an engine;
* :mod:`.delivery` holds connects, pushes to websockets and batches under load, answering
  through what :mod:`.connects` defines (a held connect, its outcome, a websocket peer);
* :mod:`.engines` is where sessions, subscriptions and queues live;
* :mod:`.transports` is the HTTP edge, long-polling, JSONP and websockets;
* :mod:`.security` is the policy interface the contact center implements.

Nothing here knows about agents or interactions: the contact center (``gateway.agents``,
``gateway.interactions``, ``gateway.api``, ``gateway.mail``) uses the hub's server-side API.
"""
