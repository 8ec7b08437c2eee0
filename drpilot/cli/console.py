"""`drpilot console`: the live web console for on-call (drpilot/console/)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from drpilot.cli.terminal import err, load_or_exit


def console(
    runbooks: Path = typer.Option(..., "--runbooks", help="Directory of runbook YAML files (every *.yaml, *.yml) the console shows."),
    host: str = typer.Option("127.0.0.1", help="Listen address. Anything but 127.0.0.1 belongs behind the SSO proxy."),
    port: int = typer.Option(8789, min=0, max=65535, help="Port."),
    identity_header: str = typer.Option(None, "--identity-header", help="Header the SSO proxy names the person in (e.g. X-Forwarded-Email)."),
    trusted_proxy: list[str] = typer.Option([], "--trusted-proxy", help="Address or network of the SSO proxy; the header is believed only from these. Repeatable."),
    dev_identity: str = typer.Option(None, "--dev-identity", help="Everyone is NAME: for a console on one's own machine, 127.0.0.1 only."),
    policy: Path = typer.Option(None, "--policy", help="Who may view, approve, start and abort (default: everyone authenticated may view, nobody may act)."),
    slack_users: Path = typer.Option(None, "--slack-users", help="Slack user id -> identity (users: {U012ABCDEF: alice@example.com}); enables POST /slack/interactions, as DRPILOT_SLACK_BOT_TOKEN does (users then by their Slack profile's email)."),
    slack_signing_secret_file: Path = typer.Option(None, "--slack-signing-secret-file", help="File holding the Slack app's signing secret. Default: DRPILOT_SLACK_SIGNING_SECRET."),
) -> None:
    """Serve the control room: every runbook's readiness, runs, DNS and drills, live, with approve, pause, resume, abort and start."""
    from drpilot.cli.shared import serve_or_exit, settings_or_exit
    from drpilot.console.app import Console
    from drpilot.console.identity import IdentityError, IdentitySource
    from drpilot.console.policy import Policy, load_policy
    from drpilot.frontdoor.logs import configure, get_logger
    from drpilot.frontdoor.temporal import connect
    from drpilot.webhook.guardrails import provider_weights

    configure()
    try:
        identity = IdentitySource.configure(header=identity_header, trusted_proxies=trusted_proxy, dev=dev_identity, host=host)
    except IdentityError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    rules = load_or_exit(policy, load_policy) if policy else Policy.default()
    loaded = _runbooks(runbooks)
    slack = _slack(slack_users, slack_signing_secret_file)
    settings = settings_or_exit()
    app = Console.build(lambda: connect(settings.temporal), settings, loaded, provider_weights(settings), identity, rules, slack).app()
    get_logger(component="console").info(
        "console serving", host=host, port=port, runbooks=len(loaded), identity=identity.describe(), policy=rules.source
    )
    serve_or_exit(app, host, port, timeout_graceful_shutdown=5)  # open live feeds end with it


def _slack(users: Path | None, secret_file: Path | None):
    """The signing secret (a file, or DRPILOT_SLACK_SIGNING_SECRET) and who Slack's users are:
    the users file, else their profile's email through Slack's API with the bot token
    (DRPILOT_SLACK_BOT_TOKEN, from the environment only). Neither secret is ever logged."""
    from slack_sdk import WebClient

    from drpilot.console.slack import SlackPeople, load_slack_users

    token = os.environ.get("DRPILOT_SLACK_BOT_TOKEN", "")
    if users is None and not token:
        if secret_file is not None:
            err.print("error: --slack-signing-secret-file needs who each Slack user is: --slack-users FILE, "
                      "or DRPILOT_SLACK_BOT_TOKEN to ask Slack for their email", markup=False)
            raise typer.Exit(2)
        return None
    try:
        secret = secret_file.read_text(encoding="utf-8").strip() if secret_file else os.environ.get("DRPILOT_SLACK_SIGNING_SECRET", "")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: --slack-signing-secret-file {secret_file}: {getattr(exc, 'strerror', None) or exc}", markup=False)
        raise typer.Exit(2) from None
    if not secret:
        err.print("error: Slack approvals need the Slack app's signing secret: set DRPILOT_SLACK_SIGNING_SECRET "
                  "or pass --slack-signing-secret-file", markup=False)
        raise typer.Exit(2)
    known = load_or_exit(users, load_slack_users) if users else {}
    return secret, SlackPeople(known, WebClient(token=token) if token else None)


def _runbooks(directory: Path) -> dict:
    if not directory.is_dir():
        err.print(f"error: --runbooks {directory}: not a directory of runbook YAML files", markup=False)
        raise typer.Exit(2)
    found: dict = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        rb = load_or_exit(path)
        if rb.name in found:
            err.print(f"{path}:1:1: metadata.name: {rb.name} is also the name of {found[rb.name][0]}; names must differ", markup=False)
            raise typer.Exit(1)
        found[rb.name] = (path, rb)
    if not found:
        err.print(f"error: --runbooks {directory}: no *.yaml or *.yml runbook in it", markup=False)
        raise typer.Exit(2)
    return {name: rb for name, (_, rb) in found.items()}
