"""The translated strings the device-test page's script shows (marked ``N_``, see
:mod:`openvisit.visits.strings`)."""

from __future__ import annotations

from openvisit.i18n import N_, gettext

DEVICETEST_STRINGS: dict[str, str] = {
    "status.checking": N_("Checking…"),
    "status.passed": N_("Works"),
    "status.failed": N_("Not working"),
    "status.skipped": N_("Skipped"),
    "camera.blocked": N_(
        "Your browser is not allowed to use the camera or microphone. Allow them (the "
        "camera or lock icon in the address bar), then press Try again."),
    "camera.none": N_("No camera was found. You can still have a visit by voice."),
    "camera.ok": N_("You should see yourself in the picture."),
    "mic.speak": N_("Say something: the bar moves when we hear you."),
    "mic.ok": N_("We can hear you."),
    "mic.silent": N_(
        "We could not hear you. Check that the microphone is not muted and is the right one."),
    "speaker.question": N_("Did you hear the sound?"),
    "speaker.ok": N_("Your speaker works."),
    "speaker.failed": N_(
        "Turn the volume up, or choose another speaker, then play the sound again."),
    "call.connecting": N_("Calling the test service…"),
    "call.ok": N_("Your video came back through the internet: a visit will work."),
    "call.failed": N_(
        "We could not connect. Try another network (Wi-Fi or mobile data) or ask the clinic "
        "for help."),
    "call.busy": N_("The test service is busy. Please try again in a minute."),
    "summary.passed": N_("Everything works. You are ready for your visit."),
    "summary.failed": N_(
        "Something did not work. You can still join your visit; the clinic may call you "
        "by phone instead."),
    "summary.saved": N_("The clinic can see this result."),
    "start.again": N_("Test again"),
    "summary.not_saved": N_("The result could not be sent to the clinic."),
}


def devicetest_strings() -> dict[str, str]:
    """The table in the active language."""
    return {key: gettext(message) for key, message in DEVICETEST_STRINGS.items()}
