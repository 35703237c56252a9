"""The organisation's OpenID Connect identity provider: staff and provider sign-in."""
