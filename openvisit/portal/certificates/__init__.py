"""Portal certificates pages: views/api serve, service holds the rules."""
