"""Portal records pages: views/api serve, service holds the rules."""
