"""Standard Webhooks signatures come from the standardwebhooks package, with our plain-text secrets too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from tests.webhooks.conftest import RELAY_SECRET
from webhooks.services import WebhookAuthError, sources, standard_webhook_signature


def test_signature_matches_the_specification_test_vector():
    # The example the Standard Webhooks specification signs.
    assert (
        standard_webhook_signature(
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp=1614265330,
            body=b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_plain_text_secret_is_the_hmac_key_as_is():
    body = b'{"lead_id":"L1"}'
    digest = hmac.new(b"not base64 at all!", b"msg_1.1700000000." + body, hashlib.sha256).digest()
    signature = standard_webhook_signature(secret="not base64 at all!", msg_id="msg_1", timestamp=1700000000, body=body)
    assert signature == "v1," + base64.b64encode(digest).decode()


def test_body_that_is_not_utf8_cannot_carry_a_valid_signature(relay_source):
    now = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": "v1,AAAA"}
    with pytest.raises(WebhookAuthError, match="does not match any active secret"):
        sources.webhook_source_authenticate_relay(headers=headers, raw_body=b"\xff\xfe", now=now)


def test_signed_relay_body_authenticates_its_source(relay_source):
    body = json.dumps({"lead_id": "L1"}).encode()
    now = int(time.time())
    signature = standard_webhook_signature(secret=RELAY_SECRET, msg_id="msg_1", timestamp=now, body=body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": f"v1,AAAA {signature}"}
    assert sources.webhook_source_authenticate_relay(headers=headers, raw_body=body, now=now) == relay_source
