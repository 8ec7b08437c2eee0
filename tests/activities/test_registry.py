"""The registry registers one implementation under every activity name the workflows call."""

from __future__ import annotations

from temporalio.activity import _Definition

from activities import contracts
from activities.registry import build_activities
from drpilot.domain.settings import load_settings

NAMES = {value for key, value in vars(contracts).items() if key.isupper() and isinstance(value, str)}


def test_every_contract_name_has_exactly_one_activity(tmp_path, monkeypatch):
    # Clients are built lazily from the environment; no endpoint is contacted here.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    registered = [
        _Definition.must_from_callable(fn).name
        for fn in build_activities(load_settings({}), admit=_front_door, previous=_front_door)
    ]
    assert sorted(registered) == sorted(NAMES)


async def _front_door(*_):
    raise AssertionError("registering an activity asks the front door nothing")
