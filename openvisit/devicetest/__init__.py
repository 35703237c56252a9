"""Device test (DESIGN §2.5): speaker, microphone, camera, connection and a real test call.

Opened from the device-test integration record (``/devicetest?ctx=…``, the endpoint's signed,
revocable context token); no appointment, account or app. The page checks each device in the
browser, then calls a server-side peer that sends the patient's own audio and video back
(:mod:`.loopback`), and stores the outcome (:mod:`.service`) as a ``devicetest`` visit with
one result event and a quality sample: ids, states and numbers only.
"""
