"""The translated strings the room's JavaScript shows, rendered into the page as JSON.

Marked with ``N_`` so ``pybabel extract -k N_`` collects them; translated per request.
"""

from __future__ import annotations

from openvisit.i18n import N_, gettext

ROOM_STRINGS: dict[str, str] = {
    # Roles as other participants see them ({n} = seat number for the 2nd, 3rd…)
    "role.provider": N_("Clinician"),
    "role.provider.n": N_("Clinician {n}"),
    "role.provider.patient_view": N_("Your clinician"),
    "role.patient": N_("Patient"),
    "role.patient.n": N_("Patient {n}"),
    "role.interpreter": N_("Interpreter"),
    "role.interpreter.n": N_("Interpreter {n}"),
    "role.guest": N_("Guest"),
    "role.guest.n": N_("Guest {n}"),
    "you": N_("You"),
    # Devices
    "devices.camera_blocked": N_(
        "We cannot use your camera or microphone. Allow them in your browser's address bar, "
        "then try again. You can still join; the clinician will hear and see you once you "
        "allow them."),
    "devices.none": N_("No camera or microphone found. You can still join and listen."),
    "devices.camera_n": N_("Camera {n}"),
    "devices.mic_n": N_("Microphone {n}"),
    "devices.speaker_n": N_("Speaker {n}"),
    "devices.starting": N_("Starting your camera…"),
    "devices.ready": N_("Your camera and microphone are ready."),
    # Connection
    "conn.connecting": N_("Connecting…"),
    "conn.connected": N_("Connected"),
    "conn.ended": N_("Visit ended"),
    "conn.reconnecting": N_("Connection lost. Reconnecting…"),
    "conn.retry_in": N_("Connection lost. Trying again in {s} s…"),
    "peer.connecting": N_("Connecting to {who}…"),
    "peer.reconnecting": N_("Reconnecting to {who}…"),
    "peer.connected": N_("{who} is connected"),
    "peer.left": N_("{who} left the call"),
    "peer.failed": N_("Could not reach {who}. Still trying…"),
    "peer.no_video": N_("Camera off"),
    # Lobby and call
    "lobby.waiting_for": N_("Waiting for {t}"),
    "call.joined": N_("You are in the visit."),
    "call.alone": N_("Waiting for others to join…"),
    "call.mic_on": N_("Mute"),
    "call.mic_off": N_("Unmute"),
    "call.cam_on": N_("Turn camera off"),
    "call.cam_off": N_("Turn camera on"),
    "call.share": N_("Share screen"),
    "call.share_stop": N_("Stop sharing"),
    "call.audio_only": N_("Audio only"),
    "call.audio_only_off": N_("Turn video back on"),
    "call.muted_notice": N_("Your microphone is muted."),
    "call.sent_back": N_("The clinician moved you back to the waiting room."),
    # Endings
    "end.left.title": N_("You left the visit"),
    "end.left.text": N_("You can rejoin with the same link while the visit is open."),
    "end.ended.title": N_("This visit has ended"),
    "end.ended.text": N_("Thank you. You can close this page."),
    "end.removed.title": N_("You are no longer in this visit"),
    "end.removed.text": N_(
        "The clinician has removed you from this visit. If this is a mistake, please call "
        "the clinic."),
    "end.replaced.title": N_("This visit is open in another window"),
    "end.replaced.text": N_("You joined from another tab or device. You can close this one."),
    "end.rejoin": N_("Rejoin"),
    # Provider panel
    "state.invited": N_("Invited, not here yet"),
    "state.waiting": N_("Waiting {t}"),
    "state.admitted": N_("In the call"),
    "state.admitted_away": N_("Admitted, disconnected"),
    "state.left": N_("Left"),
    "state.removed": N_("Removed"),
    "state.disconnected": N_("disconnected"),
    "action.admit": N_("Admit"),
    "action.lobby": N_("Back to lobby"),
    "action.remove": N_("Remove"),
    "action.failed": N_("That did not work: {why}"),
    "confirm.remove": N_("Remove {who} from the visit? Their link will stop working."),
    "invite.created": N_("Link for {who} created. Copy it, or send it below."),
    "invite.copied": N_("Link copied."),
    "invite.copy_failed": N_("Select the link and copy it."),
    "invite.send_empty": N_("Type the mobile number or e-mail address to send the link to."),
    "invite.sending": N_("Sending…"),
    "invite.sent": N_("Link on its way to {to}."),
    "invite.sent_already": N_("The link was already sent to {to} moments ago."),
    "roster.arrived": N_("{who} is waiting in the lobby."),
    "roster.joined": N_("{who} joined the call."),
    "roster.left": N_("{who} left."),
    "roster.count": N_("{n} waiting"),
    "roster.by_patient": N_("Invited by the patient"),
    "caregiver.created": N_("Link created. Give it only to the person you want with you: they "
                            "will wait until your clinician lets them in."),
    "caregiver.share_title": N_("Join my video visit"),
    # Waiting-room alerts (visit page and clinic queue)
    "alerts.chime_on": N_("Chime: on"),
    "alerts.chime_off": N_("Chime: off"),
    "alerts.notify_on": N_("Desktop alerts on"),
    "alerts.notify_blocked": N_("Desktop alerts are blocked in this browser"),
    "alerts.notify_unsupported": N_("This browser cannot show desktop alerts"),
    "alerts.waiting_title": N_("A patient is waiting"),
    "alerts.waiting_body": N_("{who} is waiting for the video visit."),
    "queue.updated": N_("Updated {t}"),
    "queue.offline": N_("Reconnecting…"),
    "queue.arrived": N_("{who} is waiting ({time})."),
    # Lobby messages (the clinician's page sends the id, the patient's page shows its text)
    "lobby.preset.late_10": N_("Your clinician is running about 10 minutes late."),
    "lobby.preset.late_few": N_("Your clinician is running a few minutes late."),
    "lobby.preset.stay": N_("Please stay on this page, you will be admitted shortly."),
    "lobby.preset.device_test": N_(
        "Please check your camera and microphone with the device test."),
    "lobby.message_from": N_("Message from the clinic"),
    "message.to_one": N_("To: {who}"),
    "message.sent": N_("Sent to {who}: “{text}”"),
    "message.not_waiting": N_("{who} is no longer waiting in the lobby."),
    "message.too_many": N_("Too many messages in a short time. Wait a moment, then send again."),
    "message.empty": N_("Write a message first."),
    # In-visit chat
    "chat.open": N_("Chat"),
    "chat.open_unread": N_("Chat ({n} new)"),
    "chat.from": N_("{who}: {text}"),
    "chat.not_in_call": N_("Chat is for the people in the call. Your message was not sent."),
}


def room_strings() -> dict[str, str]:
    """The table in the active language."""
    return {key: gettext(message) for key, message in ROOM_STRINGS.items()}
