"""WebSocket signalling for the peer-to-peer mesh, with the lobby enforced by the server.

``protocol`` is the pure message schema and the per-connection state machine; ``rooms``
caches each visit's roster per process and fans presence out; ``endpoint`` is the socket.
"""
