"""Portal endpoints pages: views/api serve, service holds the rules."""
