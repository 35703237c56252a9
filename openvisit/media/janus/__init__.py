"""Janus (VideoRoom plugin) as the SFU, driven by OpenVisit over Janus's HTTP API.

``client`` speaks Janus's HTTP API (sessions, handles, plugin messages); ``backend`` maps
the lobby onto a VideoRoom: a private room per visit whose ``secret`` only OpenVisit knows,
checked against an ``allowed`` list of per-seat tokens that holds a seat's token only while
the seat is admitted. Browsers never receive the room secret or a token: their SDP travels
through OpenVisit's signalling, which holds the Janus handles on their behalf.
"""
