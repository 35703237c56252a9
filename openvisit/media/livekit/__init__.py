"""LiveKit as the SFU: OpenVisit creates rooms and issues participant tokens with
``livekit-api`` (the ``livekit`` extra), and receives LiveKit's signed webhooks."""
