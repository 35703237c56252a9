"""Outbound notifications: SMS and e-mail confirmations and reminders carrying the join link.

- :mod:`.service` plans messages when the scheduling feed changes an appointment: one
  ``notify.send`` job per message, written in the feed's transaction (DESIGN §3).
- :mod:`.tasks` runs those jobs: opt-outs, rate limit, rendering (:mod:`.render`), the
  two-phase exactly-once send (:mod:`.delivery`), and the periodic purge of contact details.
- :mod:`.transport` is the one interface every provider implements, each in its own folder:
  ``outbox`` (embedded default), ``twilio``, ``smpp``, ``azure`` and ``email`` (SMTP).
- :mod:`.inbound` applies what comes back: delivery receipts and STOP/START replies, scoped to
  the organisation that owns the sending number.
"""
