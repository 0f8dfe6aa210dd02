"""Block Kit for alerts in training mode and the round trip of the Occupied/Unoccupied value.

A button's ``value`` is ``event_id|camera|label``: three plain fields, validated on the way
back (identifiers and a known label), never evaluated.
"""

from __future__ import annotations

from typing import Any

from homesec.contract import Label, is_identifier

ACTION_IDS: dict[Label, str] = {
    Label.OCCUPIED: "homesec_label_occupied",
    Label.UNOCCUPIED: "homesec_label_unoccupied",
}
LABEL_BY_ACTION = {action: label for label, action in ACTION_IDS.items()}
BLOCK_ID = "homesec_label"


class BadButtonValue(ValueError):
    """A button value that is not ``event_id|camera|label``."""


def encode_value(event_id: str, camera: str, label: Label) -> str:
    return f"{event_id}|{camera}|{label.value}"


def decode_value(value: str) -> tuple[str, str, Label]:
    """``(event_id, camera, label)`` from a button value; raises :class:`BadButtonValue`."""
    parts = value.split("|")
    if len(parts) != 3:
        raise BadButtonValue("button value must be event_id|camera|label")
    event_id, camera, label = parts
    if not is_identifier(event_id) or not is_identifier(camera):
        raise BadButtonValue("event id or camera is not an identifier")
    try:
        return event_id, camera, Label(label)
    except ValueError:
        raise BadButtonValue(f"unknown label {label[:20]!r}") from None


def label_blocks(event_id: str, camera: str) -> list[dict[str, Any]]:
    """The question and the two buttons posted under an alert image."""
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"Was someone there? Event `{event_id}` on *{camera}*",
            },
        },
        {
            "type": "actions",
            "block_id": BLOCK_ID,
            "elements": [
                {
                    "type": "button",
                    "action_id": ACTION_IDS[Label.OCCUPIED],
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Occupied"},
                    "value": encode_value(event_id, camera, Label.OCCUPIED),
                },
                {
                    "type": "button",
                    "action_id": ACTION_IDS[Label.UNOCCUPIED],
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Unoccupied"},
                    "value": encode_value(event_id, camera, Label.UNOCCUPIED),
                },
            ],
        },
    ]


def answered_blocks(event_id: str, camera: str, label: Label, user_id: str) -> list[dict[str, Any]]:
    """What replaces the buttons once someone answered."""
    mark = ":bust_in_silhouette:" if label is Label.OCCUPIED else ":white_check_mark:"
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{mark} Event `{event_id}` on *{camera}* labelled "
                f"*{label.value.capitalize()}* by <@{user_id}>",
            },
        }
    ]
