"""`drpilot webhook serve` and `drpilot webhook rules validate|schema`."""

from __future__ import annotations

from pathlib import Path

import typer

from drpilot.cli.terminal import document_commands, err, load_or_exit

app = typer.Typer(help="The Alertmanager webhook that starts failovers from alerts.", no_args_is_help=True)
rules_app = typer.Typer(help="Validate and export webhook routing rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _load_rules(path: Path) -> object:
    from drpilot.webhook.rules import load_rules  # the webhook's imports only when asked for

    return load_rules(path)


def _rules_schema() -> dict:
    from drpilot.webhook.rules import rules_schema

    return rules_schema()


document_commands(
    rules_app, load=_load_rules, schema=_rules_schema, noun="rules file", files_help="Rules YAML files.",
    validate_help="Check rules files (and the runbooks they name); print every problem as FILE:LINE:COL.",
    schema_help="Print the rules file's JSON Schema (for editors).",
)


@app.command()
def serve(
    rules: Path = typer.Option(..., "--rules", help="Routing rules YAML (see infra/alertmanager/drpilot-rules.yaml)."),
    host: str = typer.Option(None, help="Listen address (default from DRPILOT_WEBHOOK_LISTEN, else 127.0.0.1)."),
    port: int = typer.Option(None, min=0, max=65535, help="Port (default from DRPILOT_WEBHOOK_LISTEN, else 8787)."),
    token_file: Path = typer.Option(None, "--token-file", help="File holding the bearer token; read again when it changes. Default: DRPILOT_WEBHOOK_TOKEN."),
    kill_switch_file: Path = typer.Option(None, "--kill-switch-file", help="While this file exists, alerts start nothing (notify only)."),
    max_body: int = typer.Option(None, "--max-body", min=1024, help="Largest request body in bytes (default 4 MiB)."),
) -> None:
    """Receive Alertmanager's webhook on POST /v1/alertmanager and start failovers by the rules."""
    from drpilot.cli.shared import serve_or_exit
    from drpilot.domain.settings import SettingsError, load_settings, split_listen
    from drpilot.frontdoor.logs import configure
    from drpilot.frontdoor.temporal import connect
    from drpilot.webhook.app import MAX_BODY, TokenSource, Webhook
    from drpilot.webhook.guardrails import KillSwitch, provider_weights
    from drpilot.webhook.rules import load_rules

    configure()
    routing = load_or_exit(rules, load_rules)
    try:
        settings = load_settings()
        default_host, default_port = split_listen("DRPILOT_WEBHOOK_LISTEN", settings.webhook_listen)
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    if not settings.webhook_token and token_file is None:
        err.print(
            "error: the webhook starts failovers, so it needs a bearer token: set DRPILOT_WEBHOOK_TOKEN "
            "or pass --token-file (the one Alertmanager's http_config.authorization sends)",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        token = TokenSource(None if token_file else settings.webhook_token, token_file)
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: --token-file {token_file}: {getattr(exc, 'strerror', None) or exc}", markup=False)
        raise typer.Exit(2) from None
    weights = provider_weights(settings, (route.runbook for route in routing.routes))
    webhook = Webhook(
        routing, settings, token, lambda: connect(settings.temporal), weights,
        kill_switch=KillSwitch(kill_switch_file), max_body=max_body or MAX_BODY,
    )
    serve_or_exit(webhook.app(), host or default_host, default_port if port is None else port, timeout_keep_alive=5)
