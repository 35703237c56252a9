"""The peer-to-peer mesh: every admitted browser sends to every other (the default)."""
