"""The ``kf-plugin`` command (also ``flask kf`` once ``init_app`` ran).

Each family of sub-commands lives in a module of its own and imports only :mod:`.common`;
this module gathers them into the group. Exit codes: 0 success, 1 the command ran but the
answer is negative (no rule matched, a push was refused, an API error), 2 bad input
(invalid rule file, bad options, missing configuration).
"""
from __future__ import annotations

import logging

import click

from .handoff_commands import handoffs
from .reload_commands import reload, rules
from .rule_commands import check, push, route
from .sandbox_command import sandbox
from .sandbox_control_commands import SANDBOX_CONTROLS
from .service_commands import accounts, records, send, sessions, typing, window
from .token_commands import token
from .wecom_commands import wecom

__all__ = ["cli", "main"]


@click.group()
def cli() -> None:
    """Customer-service hand-off for WeChat official accounts."""
    if not logging.getLogger().handlers:
        # Errors reach the user as one line each; without this, Python would also print every warning
        # logged on the way (each retry of an unreachable API, say) to stderr.
        logging.getLogger("kf_plugin").addHandler(logging.NullHandler())


for _command in (check, route, push, reload, rules, accounts, sessions, send, typing, records, window, handoffs, token,
                 sandbox, wecom):
    cli.add_command(_command)
for _command in SANDBOX_CONTROLS:
    sandbox.add_command(_command)


def main() -> None:
    cli(prog_name="kf-plugin")
