"""Portal approval pages: views/api serve, service holds the rules."""
