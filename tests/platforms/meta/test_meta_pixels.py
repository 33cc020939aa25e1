"""The pixels an ad account may send conversions to, read from its adspixels edge."""

from __future__ import annotations

from platforms.base import Account, ConversionActionInfo
from platforms.meta import MetaPlatform
from platforms.sandbox.meta import MetaSandbox


def test_list_conversion_actions_returns_the_ad_accounts_pixels(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    pixels = platform.list_conversion_actions(eur_account)

    assert pixels == [ConversionActionInfo(sandbox.state.data.pixel_id, sandbox.state.data.pixel_name)]
    assert pixels[0].external_id == "400000000000001"
    assert sandbox.state.requests[-1][1] == f"/v26.0/act_{eur_account.external_id}/adspixels"
