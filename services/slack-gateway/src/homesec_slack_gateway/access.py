"""Who may do what from Slack. It fails closed.

* ``allowed_users`` (``HOMESEC_SLACK_GATEWAY_ALLOWED_USERS``): the Slack user ids that may use
  every command and the label buttons; ``*`` opens them to the whole workspace, explicitly.
  Empty (the default): nobody may, until the owner names someone.
* ``help`` answers everyone: it reveals nothing about the house, and its refusal would only
  hide the way to the setting. ``status``, ``position`` and ``snapshot`` do not: they tell
  whether the house is armed and who is home, and show the inside of it.
* ``initialize`` also needs ``admin_users`` (``HOMESEC_SLACK_GATEWAY_ADMIN_USERS``).

Every refusal names the setting and the user's own id, so the owner can copy it there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from homesec_slack_gateway.commands import Action

log = logging.getLogger("homesec.slack_gateway.access")

ALLOWED_USERS_SETTING = "HOMESEC_SLACK_GATEWAY_ALLOWED_USERS"
ADMIN_USERS_SETTING = "HOMESEC_SLACK_GATEWAY_ADMIN_USERS"
EVERYONE = "*"
OPEN_TO_ALL = frozenset({Action.HELP})


class Access:
    """The gateway's authorisation rules, from its two user lists."""

    def __init__(self, allowed_users: Iterable[str], admin_users: Iterable[str]) -> None:
        allowed, admins = set(allowed_users), set(admin_users)
        self.workspace = EVERYONE in allowed
        self.allowed = frozenset(allowed - {EVERYONE})
        self.all_admins = EVERYONE in admins
        self.admins = frozenset(admins - {EVERYONE})

    def log_policy(self) -> None:
        """Say once, at start, who may control the house."""
        if self.workspace:
            log.warning(
                "every member of the Slack workspace may arm, disarm and move the camera",
                extra={"setting": f"{ALLOWED_USERS_SETTING}=*"},
            )
        elif not self.allowed:
            log.warning(
                "no Slack user may control homesec: every command but help and every button "
                "is refused; set the setting to the Slack user ids of the household",
                extra={"setting": ALLOWED_USERS_SETTING},
            )

    def may_use(self, user: str) -> bool:
        return self.workspace or user in self.allowed

    def command_refusal(self, user: str, action: Action) -> str | None:
        """None when ``user`` may run ``action``; else the reply that says why not."""
        if action in OPEN_TO_ALL:
            return None
        if not self.may_use(user):
            return self._not_allowed(user, f"run `{action.value}`")
        if action is Action.INITIALIZE and not (self.all_admins or user in self.admins):
            return (
                f"Only the configured admin users (`{ADMIN_USERS_SETTING}`) may run "
                f"`initialize`; your Slack user id is `{user}`."
            )
        return None

    def button_refusal(self, user: str) -> str | None:
        """None when ``user`` may answer a label button; else the reply that says why not."""
        return None if self.may_use(user) else self._not_allowed(user, "label homesec events")

    def _not_allowed(self, user: str, what: str) -> str:
        if not self.allowed:
            return (
                f":no_entry: homesec refuses to {what}: no Slack user may control it yet. "
                f"The owner lists the user ids allowed in `{ALLOWED_USERS_SETTING}` (yours is "
                f"`{user}`), or sets it to `*` for everyone in the workspace."
            )
        return (
            f":no_entry: Sorry, you may not {what}: your Slack user id `{user}` is not in "
            f"`{ALLOWED_USERS_SETTING}`."
        )
