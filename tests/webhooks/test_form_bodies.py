"""Make.com and Zapier form bodies: the same door, the same lead as the JSON they stand for."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from urllib3.filepost import encode_multipart_formdata

from tests.webhooks.conftest import RELAY_SECRET, post_json
from webhooks import services
from webhooks.models import Lead, WebhookEvent

ZAPIER = "/api/v1/webhooks/zapier"
GOOGLE = "/api/v1/webhooks/google-lead-form"
FORM = "application/x-www-form-urlencoded"
SECRET = {"X-Webhook-Secret": RELAY_SECRET}

pytestmark = pytest.mark.django_db

# What a scenario would post as JSON ...
AS_JSON = {
    "lead_id": "form-0001",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "Ada@Example.org",
    "phone": "(650) 555-0199",
    "campaign_id": "50000000000",
    "gclid": "EAIaIQobChMI-form",
    "answers": {"budget": "12000", "timeline": "this month"},
    "interests": ["solar", "battery"],
}
# ... and the same lead as Make.com's form encoding flattens it (brackets, repeated "[]") ...
MAKE_FIELDS = [
    ("lead_id", "form-0001"),
    ("first_name", "Ada"),
    ("last_name", "Lovelace"),
    ("email", "Ada@Example.org"),
    ("phone", "(650) 555-0199"),
    ("campaign_id", "50000000000"),
    ("gclid", "EAIaIQobChMI-form"),
    ("answers[budget]", "12000"),
    ("answers[timeline]", "this month"),
    ("interests[]", "solar"),
    ("interests[]", "battery"),
]
# ... and as Zapier's form payload does (double underscores, a repeated key for the list).
ZAPIER_FIELDS = [
    (key.replace("answers[", "answers__").rstrip("]") if key.startswith("answers[") else key.removesuffix("[]"), value)
    for key, value in MAKE_FIELDS
]
LEAD_COLUMNS = (
    "external_lead_id",
    "full_name",
    "email",
    "phone",
    "phone_raw",
    "gclid",
    "campaign_external_id",
    "custom_answers",
    "is_test",
)


def lead_row(lead: Lead) -> dict:
    return {name: getattr(lead, name) for name in LEAD_COLUMNS}


def post_form(client, fields, *, content_type: str = FORM, raw: bytes | None = None, **headers: str):
    body = raw if raw is not None else urlencode(fields).encode()
    return client.generic("POST", ZAPIER, body, content_type=content_type, headers={**SECRET, **headers})


def post_multipart(client, fields, **headers: str):
    body, content_type = encode_multipart_formdata(fields)
    return client.generic("POST", ZAPIER, body, content_type=content_type, headers={**SECRET, **headers}), body


def signed(body: bytes, *, msg_id: str = "msg_form_1") -> dict[str, str]:
    now = int(time.time())
    signature = services.standard_webhook_signature(secret=RELAY_SECRET, msg_id=msg_id, timestamp=now, body=body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}


def json_lead(client) -> dict:
    response = post_json(client, ZAPIER, AS_JSON, **SECRET)
    assert response.status_code == 202
    row = lead_row(services.webhook_event_process(event_id=response.json()["id"]))
    # The lead_id is unique across leads: let the form copy become its own lead.
    Lead.objects.all().delete()
    WebhookEvent.objects.all().delete()
    return row


# --- Accepted bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [MAKE_FIELDS, ZAPIER_FIELDS], ids=["make-brackets", "zapier-underscores"])
def test_urlencoded_body_becomes_the_same_lead_as_its_json(api_client, relay_source, fields):
    expected = json_lead(api_client)
    body = urlencode(fields).encode()
    response = post_form(api_client, fields)

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    # Stored as sent: the bytes a signature covers, and the type to read them with.
    assert (event.raw_body.encode(), event.content_type) == (body, FORM)
    assert event.dedupe_key == "lead:form-0001"
    lead = services.webhook_event_process(event_id=event.pk)
    assert lead_row(lead) == expected
    assert lead.custom_answers == {
        "budget": "12000",
        "timeline": "this month",
        "interests": ["solar", "battery"],
    }
    assert (lead.full_name, lead.email, lead.phone) == ("Ada Lovelace", "ada@example.org", "+16505550199")


def test_multipart_body_becomes_the_same_lead_as_its_json(api_client, relay_source):
    expected = json_lead(api_client)
    response, body = post_multipart(api_client, MAKE_FIELDS)

    assert response.status_code == 202, response.content
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert event.raw_body.encode() == body
    assert event.content_type.startswith("multipart/form-data; boundary=")
    assert lead_row(services.webhook_event_process(event_id=event.pk)) == expected


def test_utf8_values_and_indexed_keys_are_read_back(api_client, relay_source):
    fields = [
        ("full_name", "Zoë Ångström 😀"),
        ("email", "zoe@example.org"),
        ("answers[rooms][0]", "kitchen"),
        ("answers[rooms][1]", "attic"),
        ("answers[note]", "a+b & c=d"),
    ]
    lead = services.webhook_event_process(event_id=post_form(api_client, fields).json()["id"])
    assert lead.full_name == "Zoë Ångström 😀"
    assert lead.custom_answers == {"rooms": ["kitchen", "attic"], "note": "a+b & c=d"}


def test_form_answers_route_like_json_answers(api_client, relay_source, email_destination):
    from webhooks.models import RoutingRule

    rule = RoutingRule.objects.create(
        name="Big budget",
        position=1,
        priority="urgent",
        conditions=[{"field": "answers.budget", "op": "gte", "value": 10000}],
    )
    rule.destinations.add(email_destination)
    services.routing_rules_invalidate()
    lead = services.webhook_event_process(event_id=post_form(api_client, ZAPIER_FIELDS).json()["id"])
    assert (lead.priority, lead.matched_rule_id) == ("urgent", rule.pk)


def test_a_repeated_form_lead_is_a_duplicate(api_client, relay_source):
    first = post_form(api_client, MAKE_FIELDS)
    again = post_form(api_client, ZAPIER_FIELDS)  # the same lead_id, flattened the other way
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    assert WebhookEvent.objects.count() == 1


def test_a_form_body_signed_over_its_raw_bytes_is_accepted(api_client, relay_source):
    body = urlencode(MAKE_FIELDS).encode()
    response = api_client.generic("POST", ZAPIER, body, content_type=FORM, headers=signed(body))
    assert response.status_code == 202

    multipart, multipart_type = encode_multipart_formdata([("email", "b@example.org"), ("answers[x]", "1")])
    headers = signed(multipart, msg_id="msg_form_2")
    response = api_client.generic("POST", ZAPIER, multipart, content_type=multipart_type, headers=headers)
    assert response.status_code == 202

    # The same fields re-encoded (another order) are other bytes: the signature no longer holds.
    reordered = urlencode(list(reversed(MAKE_FIELDS))).encode()
    headers = signed(body, msg_id="msg_form_3")
    response = api_client.generic("POST", ZAPIER, reordered, content_type=FORM, headers=headers)
    assert response.status_code == 401
    assert WebhookEvent.objects.count() == 2


def test_form_without_a_secret_is_401(api_client, relay_source):
    response = api_client.generic("POST", ZAPIER, urlencode(MAKE_FIELDS).encode(), content_type=FORM)
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


# --- Refused at the door ---------------------------------------------------------------------------------


def assert_refused(response, code: str = "invalid_body") -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert not WebhookEvent.objects.exists()
    return body["error"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"email=a%40b.org&full_name=Z%FCrich", "encoding"),  # Latin-1 percent-escape, not UTF-8
        (b"email=a%40b.org&full_name=%ED%A0%80", "encoding"),  # a lone surrogate, UTF-8-encoded
        (b"email=a%40b.org&full_name=Z\xfcrich", "encoding"),  # raw Latin-1 byte
        (b"email=a%40b.org&full_name=a%00b", "nul"),
        (b"email=a%40b.org&full_name=a\x00b", "nul"),
    ],
)
def test_badly_encoded_form_is_400(api_client, relay_source, raw, reason):
    error = assert_refused(post_form(api_client, None, raw=raw))
    assert error["details"]["reason"] == reason


def test_form_in_another_charset_is_400(api_client, relay_source):
    error = assert_refused(post_form(api_client, MAKE_FIELDS, content_type=f"{FORM}; charset=iso-8859-1"))
    assert error["details"] == {"charset": "iso-8859-1"}


def test_a_key_that_is_both_value_and_group_is_400(api_client, relay_source):
    error = assert_refused(post_form(api_client, [("email", "a@b.org"), ("answers", "x"), ("answers[budget]", "1")]))
    assert error["details"] == {"key": "answers[budget]"}


def test_a_form_of_indexes_only_is_a_list_not_a_lead_and_is_400(api_client, relay_source):
    error = assert_refused(post_form(api_client, [("0", "a@b.org"), ("1", "Jane")]))
    assert error["details"] == {"reason": "not_an_object"} and "by name" in error["message"]


def test_multipart_without_boundary_or_with_a_file_is_400(api_client, relay_source):
    body, content_type = encode_multipart_formdata([("email", "a@b.org")])
    response = api_client.generic("POST", ZAPIER, body, content_type="multipart/form-data", headers=SECRET)
    assert assert_refused(response)["details"] == {"reason": "multipart"}

    body, content_type = encode_multipart_formdata([("email", "a@b.org"), ("cv", ("cv.txt", b"hello", "text/plain"))])
    response = api_client.generic("POST", ZAPIER, body, content_type=content_type, headers=SECRET)
    assert assert_refused(response)["details"] == {"key": "cv"}

    body, content_type = encode_multipart_formdata([("email", "a@b.org"), ("full_name", "Z\xfcrich".encode("latin-1"))])
    response = api_client.generic("POST", ZAPIER, body, content_type=content_type, headers=SECRET)
    assert assert_refused(response)["details"]["reason"] == "encoding"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a@b.org", "budget": NaN}',
        b'{"email": "a@b.org", "budget": Infinity}',
        b'{"email": "a@b.org", "budget": 1e400}',
        b'{"email": "a@b.org", "full_name": "\\ud800"}',
        b'{"email": "a@b.org", "\\udfff": 1}',
    ],
    ids=["nan", "infinity", "overflow", "lone-surrogate-value", "lone-surrogate-key"],
)
def test_json_that_is_not_strict_json_is_400_at_both_doors(api_client, relay_source, google_source, raw):
    error = assert_refused(post_json(api_client, ZAPIER, None, raw=raw, **SECRET), code="parse_error")
    assert error["message"].startswith("The request body is not valid JSON.")
    assert isinstance(error["details"]["position"], int)
    assert_refused(post_json(api_client, GOOGLE, None, raw=raw), code="parse_error")


@pytest.mark.parametrize("depth", [33, 2000])
def test_json_nested_deeper_than_the_limit_is_400_at_both_doors(api_client, relay_source, google_source, depth):
    raw = b'{"email": "a@b.org", "x": ' + b"[" * depth + b"]" * depth + b"}"
    error = assert_refused(post_json(api_client, ZAPIER, None, raw=raw, **SECRET))
    assert error["details"] == {"reason": "too_deep", "limit": 32}
    # The Google door reads the body before the key it holds: the limit comes before authentication.
    assert assert_refused(post_json(api_client, GOOGLE, None, raw=raw))["details"]["reason"] == "too_deep"
    assert not WebhookEvent.objects.exists()


def test_a_surrogate_pair_is_fine(api_client, relay_source):
    raw = json.dumps({"email": "a@b.org", "full_name": "Ada 😀"}).encode()  # ensure_ascii: \ud83d\ude00
    assert b"\\ud83d" in raw
    response = post_json(api_client, ZAPIER, None, raw=raw, **SECRET)
    assert response.status_code == 202
    assert services.webhook_event_process(event_id=response.json()["id"]).full_name == "Ada 😀"


def test_unflatten_rules():
    assert services.form_fields_unflatten(
        [
            ("a[b][c]", "1"),
            ("z__y__x", "2"),
            ("tags", "x"),
            ("tags", "y"),
            ("one[]", "only"),
            ("rows[0][n]", "first"),
            ("rows[1][n]", "second"),
            ("sparse[3]", "kept as a key"),
            ("__typename", "literal"),
            ("trailing__", "literal"),
            ("empty", ""),
        ]
    ) == {
        "a": {"b": {"c": "1"}},
        "z": {"y": {"x": "2"}},
        "tags": ["x", "y"],
        "one": ["only"],
        "rows": [{"n": "first"}, {"n": "second"}],
        "sparse": {"3": "kept as a key"},
        "__typename": "literal",
        "trailing__": "literal",
        "empty": "",
    }
    with pytest.raises(services.WebhookBodyError):
        services.form_fields_unflatten([("a[]", "1"), ("a[b]", "2")])
    with pytest.raises(services.WebhookBodyError):
        services.form_fields_unflatten([("a[][b]", "1")])
    with pytest.raises(services.WebhookBodyError):
        services.form_fields_unflatten([("k" + "[x]" * 9, "deep")])
