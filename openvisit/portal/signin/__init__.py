"""Portal signin pages: views/api serve, service holds the rules."""
