"""Portal sms pages: views/api serve, service holds the rules."""
