"""Normalizing what senders type: phones to E.164, ids to 64-bit integers, times to UTC."""

from __future__ import annotations

import pytest
from django.test import override_settings

from conversions.hashing import phone_calling_code
from webhooks.services import LeadPayloadError, lead_data_from_payload, phone_to_e164


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (650) 555-0123", "1", "+16505550123"),
        ("650.555.0123", "1", "+16505550123"),
        ("1-650-555-0123", "1", "+16505550123"),
        ("(650) 555-0123 ext. 42", "1", "+16505550123"),
        ("0044 20 7946 0958", "1", "+442079460958"),
        ("+44 (0)20 7946 0958", "1", "+442079460958"),  # the bracketed trunk 0 is not dialled
        ("020 7946 0958", "44", "+442079460958"),
        ("06 12 34 56 78", "33", "+33612345678"),
        ("555-0123", "1", ""),  # too short for the NANP
        ("+1 650 555 01234", "1", ""),
        ("call me maybe", "1", ""),
        ("", "1", ""),
        ("+1234567890123456", "1", ""),  # longer than E.164 allows
        ("6505550123", "", ""),  # national number and no default country
        ("020 7946 0018", "44", "+442079460018"),
        ("+44 20 7946 0018 ext. 123", "1", "+442079460018"),  # the extension is not part of E.164
        ("+44 20 7946 001", "1", ""),  # one digit short for a London number
        ("+1 212 055 0123", "1", ""),  # NANP exchanges never start with 0
        ("+7 912 345 67 89", "1", "+79123456789"),  # a one-digit calling code
        ("6505550123", "999", ""),  # no country has calling code 999
    ],
)
def test_phone_to_e164(raw, country, expected):
    assert phone_to_e164(raw, default_country_code=country) == expected


@pytest.mark.parametrize(
    ("phone", "calling_code"),
    [("+16505550123", "1"), ("+442079460018", "44"), ("+79123456789", "7"), ("+353851234567", "353"), ("", "")],
)
def test_phone_country_is_the_whole_calling_code(phone, calling_code):
    # What the routing field "phone_country" compares; it once took two characters after the +.
    assert phone_calling_code(phone) == calling_code


def test_first_and_last_name_make_the_full_name():
    data = lead_data_from_payload({"firstName": "Grace", "LastName": "Hopper", "Email": " GRACE@Example.COM "})
    assert (data.full_name, data.email) == ("Grace Hopper", "grace@example.com")


def test_ids_outside_64_bits_are_dropped_not_crashed():
    data = lead_data_from_payload({"email": "a@b.c", "campaign_id": str(2**64), "form_id": "abc", "adgroup_id": True})
    assert (data.campaign_external_id, data.form_id, data.adgroup_id) == (None, None, None)


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2026-01-15T10:20:30Z", "2026-01-15T10:20:30+00:00"),
        ("2026-01-15T12:20:30+02:00", "2026-01-15T12:20:30+02:00"),
        ("2026-01-15 10:20:30", "2026-01-15T10:20:30+00:00"),
        (1768472430, "2026-01-15T10:20:30+00:00"),
        (1768472430000, "2026-01-15T10:20:30+00:00"),
        ("yesterday", None),
    ],
)
def test_submit_times(value, iso):
    data = lead_data_from_payload({"email": "a@b.c", "lead_submit_time": value})
    assert (data.submitted_at.isoformat() if data.submitted_at else None) == iso


@override_settings(LEADS_DEFAULT_PHONE_COUNTRY_CODE="44")
def test_default_country_comes_from_settings():
    assert lead_data_from_payload({"phone": "020 7946 0958"}).phone == "+442079460958"


def test_secret_like_keys_never_become_answers():
    data = lead_data_from_payload({"email": "a@b.c", "google_key": "k", "api_key": "k2", "color": "blue"})
    assert data.custom_answers == {"color": "blue"}


@pytest.mark.parametrize("payload", [{}, {"note": "hi"}, {"user_column_data": "oops", "email": "a@b.c"}])
def test_payloads_without_a_lead_are_refused(payload):
    with pytest.raises(LeadPayloadError):
        lead_data_from_payload(payload)
