"""Conversion actions are read from the account through GAQL, as the real API lists them."""

from __future__ import annotations

from google_sandbox_support import UK_ACCOUNT, US_ACCOUNT

from platforms.base import ConversionActionInfo


def test_list_conversion_actions_reads_each_accounts_own_actions(sandbox, google):
    us_actions = google.list_conversion_actions(US_ACCOUNT)
    uk_actions = google.list_conversion_actions(UK_ACCOUNT)

    expected_us = [
        ConversionActionInfo(str(a.id), a.name)
        for a in sandbox.state.data.conversion_actions
        if a.customer_id == 1234567890
    ]
    assert us_actions == expected_us
    assert ConversionActionInfo("880000001", "Purchase") in us_actions
    assert {a.external_id for a in uk_actions} == {"880000011", "880000012"}
    search = sandbox.state.calls[-1]
    assert (search.method, search.customer_id, search.status) == ("SearchStream", UK_ACCOUNT.external_id, "OK")
