"""Phones for enhanced conversions and Meta hashing: libphonenumber's numbering plan, one normalizer."""

from __future__ import annotations

import pytest

from conversions import hashing


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("020 7946 0018", "GB", "+442079460018"),
        ("020 7946 0018", "gb", "+442079460018"),  # the region is accepted in any case
        ("+44 (0)20 7946 0018", "", "+442079460018"),  # the bracketed trunk 0 is not dialled
        ("+1 650-555-1212 x123", "", "+16505551212"),  # the extension is not part of E.164
        ("0033 6 12 34 56 78", "", "+33612345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("(650) 555-1212", "CA", "+16505551212"),  # the NANP spans the US and Canada
    ],
)
def test_phone_is_normalized_to_e164(raw, country, expected):
    assert hashing.normalize_phone_e164(raw, country=country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("+44 20 7946 001", ""),  # one digit short for a London number
        ("+1 212 055 0123", ""),  # NANP exchanges never start with 0
        ("not a phone", "US"),
    ],
)
def test_invalid_phone_is_refused_without_repeating_it(raw, country):
    with pytest.raises(hashing.IdentifierError, match="valid phone number") as excinfo:
        hashing.normalize_phone_e164(raw, country=country)
    assert raw not in str(excinfo.value)


@pytest.mark.parametrize("country", ["", "ZZ", "United Kingdom"])
def test_national_phone_without_a_known_country_asks_for_the_country(country):
    with pytest.raises(hashing.IdentifierError, match="together with the country"):
        hashing.normalize_phone_e164("020 7946 0018", country=country)


def test_meta_phone_is_digits_of_the_same_e164():
    assert hashing.meta_hash("ph", "020 7946 0018", country="GB") == hashing.sha256_hex("442079460018")


def test_phone_e164_is_empty_when_invalid_instead_of_raising():
    assert hashing.phone_e164("+44 20 7946 001") == ""
    assert hashing.phone_e164("6505551212") == ""  # national, no region
    assert hashing.phone_e164("6505551212", region="US") == "+16505551212"


def test_calling_code_maps_to_its_main_region():
    assert [hashing.phone_region_for_calling_code(c) for c in ("1", "44", "33", "999", "", "x")] == [
        "US",
        "GB",
        "FR",
        "",
        "",
        "",
    ]
