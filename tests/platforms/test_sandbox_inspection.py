"""What the emulators stored can be read back over loopback: Google's click conversions on its
OAuth port, Meta's Conversions API events on its Graph port."""

from __future__ import annotations

import json
from urllib.request import urlopen

from platforms.sandbox.google.oauth import INSPECT_CONVERSIONS_PATH
from platforms.sandbox.google.state import StoredConversion
from platforms.sandbox.meta.server import INSPECT_EVENTS_PATH


def _get(port: int, path: str) -> dict:
    with urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_google_sandbox_lists_the_conversions_it_stored(sandbox):
    state = sandbox.google.state
    before = len(_get(sandbox.google.oauth_port, INSPECT_CONVERSIONS_PATH)["conversions"])
    conversion = StoredConversion(
        customer_id=1234567890,
        conversion_action_id=880000001,
        gclid="Cj0KCQ-inspect-1",
        gbraid="",
        wbraid="",
        conversion_date_time="2026-12-01 10:00:00+00:00",
        conversion_value=19.99,
        currency_code="USD",
        order_id="inspect-1",
        hashed_emails=(),
        hashed_phone_numbers=(),
        ad_user_data_consent="GRANTED",
        ad_personalization_consent="GRANTED",
    )
    with state.lock:
        state.store_conversion(conversion, (1234567890, 880000001, "Cj0KCQ-inspect-1", 0.0))
    listed = _get(sandbox.google.oauth_port, INSPECT_CONVERSIONS_PATH)["conversions"]
    assert len(listed) == before + 1
    assert listed[-1]["order_id"] == "inspect-1" and listed[-1]["conversion_action_id"] == 880000001


def test_the_meta_sandbox_lists_the_events_it_stored(sandbox):
    state = sandbox.meta.state
    event = {"event_name": "Purchase", "event_id": "inspect-event-1", "event_time": 1_764_000_000}
    with state.lock:
        state.stored_events.append(event)
    events = _get(sandbox.meta.port, INSPECT_EVENTS_PATH)["events"]
    assert events[-1] == event
