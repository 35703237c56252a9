"""Portal setup pages: views/api serve, service holds the rules."""
