"""Portal audit pages: views/api serve, service holds the rules."""
