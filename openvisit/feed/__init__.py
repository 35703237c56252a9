"""The inbound scheduling feed: HL7 v2 SIU over MLLP (optionally TLS) and over signed HTTPS.

Layers, bottom up (DESIGN §2.6, EHR-SPEC §4 and §6):

- :mod:`openvisit.hl7v2` (framing, parsing, ACKs: pure protocol, no I/O);
- :mod:`.senders`: which endpoint a message comes from (MSH-3/MSH-4), cached per process;
- :mod:`.service`: :func:`~.service.apply_siu` upserts the appointment and its encrypted
  contacts and tells notifications (:func:`~.service.notify_planner`);
- :mod:`.intake`: one raw message → its ACK (idempotency on MSH-10, AA only after commit),
  with :mod:`.group` letting messages ready together share one transaction;
- :mod:`.listener` (the MLLP server, ``openvisit mllp``; the framing below it is
  :mod:`openvisit.hl7v2.mllp`) and :mod:`.http` (``POST /hl7/siu``, verified by
  :mod:`.signing` against the certificates of :mod:`openvisit.certificates`);
- :mod:`.commands`: set-up used by the CLI (senders, SCH-25 status map, certificate upload).

Expired contacts are deleted by the ``notify.purge`` periodic job (openvisit.notify.tasks),
the one purge of contact details.
"""
