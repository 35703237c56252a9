"""Media backends: who carries a visit's audio and video (DESIGN §2.4).

``backend`` is the interface every backend implements (what a seat needs to join, granting
and revoking media as the lobby moves a seat, closing a room); ``backends`` the table by
name; ``mesh/`` (peer to peer through :mod:`openvisit.signalling`, the embedded default),
``janus/`` (the VideoRoom plugin, driven by OpenVisit over Janus's HTTP API) and
``livekit/`` (rooms and participant tokens through ``livekit-api``, the ``livekit`` extra)
each in its own folder. ``service`` is what the lobby calls; ``tasks`` runs the calls out
as jobs, so a grant or a revocation survives a dead process.
"""
