"""Visits: one video visit per appointment, seats with a server-enforced lobby (DESIGN §2.3).

``service`` is the API other packages call (launch, notifications); ``views`` serves the
visit pages, ``endpoints`` the provider's JSON actions; the live part is
:mod:`openvisit.signalling`.
"""
