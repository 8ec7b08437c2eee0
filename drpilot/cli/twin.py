"""`drpilot sandbox ...` and `drpilot demo` belong to the twin, a separate distribution
(drpilot-twin, in this repository's twin/) that production never installs. The twin offers
its commands under the entry-point group `drpilot.commands`; the product never imports it.
Where the twin is not installed, each command says in one line how to install it."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from drpilot.cli.terminal import err

GROUP = "drpilot.commands"
# The twin's commands, and what each is for when it is missing.
TWIN_COMMANDS = {
    "sandbox": "A simulated twin of a runbook's world on 127.0.0.1 (needs the twin).",
    "demo": "The outage story on a simulated twin (needs the twin).",
}
INSTALL = "pip install -e ./twin (from a drpilot checkout; it brings the emulators, moto among them)"


def add_twin_commands(app: typer.Typer) -> None:
    """Add the twin's commands where it is installed, and where it is not a stand-in for each
    that names the install step."""
    offered = {ep.name: ep for ep in entry_points(group=GROUP) if ep.name in TWIN_COMMANDS}
    for name, help_text in TWIN_COMMANDS.items():
        if name in offered:
            command = offered[name].load()
            if isinstance(command, typer.Typer):
                app.add_typer(command, name=name)
            else:
                app.command(name)(command)
        else:
            app.command(name, help=help_text, context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                        add_help_option=False)(_missing(name))


def _missing(name: str):
    def command() -> None:
        err.print(f"error: `drpilot {name}` needs the sandbox twin, which is not installed here: {INSTALL}",
                  markup=False)
        raise typer.Exit(2)

    return command
