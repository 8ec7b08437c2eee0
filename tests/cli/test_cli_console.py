"""`drpilot console` refuses to start, in one line and before serving anything, without an
identity source, with a policy or a runbook directory it cannot use."""

from __future__ import annotations

from tests.support.commands import drpilot
from tests.support.paths import RUNBOOKS


def test_the_console_does_not_start_without_an_identity_source():
    done = drpilot("console", "--runbooks", str(RUNBOOKS))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "error: the console needs to know who is asking: pass --identity-header NAME with --trusted-proxy ADDRESS "
        "(the SSO proxy in front of it), or --dev-identity NAME on 127.0.0.1"
    )
    exposed = drpilot("console", "--runbooks", str(RUNBOOKS), "--dev-identity", "me", "--host", "0.0.0.0")
    assert exposed.returncode == 2
    assert exposed.stderr.strip() == "error: --dev-identity serves only 127.0.0.1, not 0.0.0.0: behind SSO use --identity-header"


def test_a_bad_policy_is_shown_where_it_is_wrong(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("grants:\n  - who: [alice@example.com]\n    may: [approve]\n    runbook: ['*']\n")
    done = drpilot("console", "--runbooks", str(RUNBOOKS), "--dev-identity", "me", "--policy", str(policy))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{policy}:4:5: grants[0].runbook: unknown field") and "runbooks" in line
    (tmp_path / "empty").mkdir()
    empty = drpilot("console", "--runbooks", str(tmp_path / "empty"), "--dev-identity", "me")
    assert empty.returncode == 2
    assert empty.stderr.strip() == f"error: --runbooks {tmp_path / 'empty'}: no *.yaml or *.yml runbook in it"
