"""Portal staff pages: views/api serve, service holds the rules."""
