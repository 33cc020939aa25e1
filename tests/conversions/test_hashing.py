"""Identifiers are normalized and hashed the way Google and Meta match them (their published examples)."""

from __future__ import annotations

import hashlib

import pytest

from conversions import hashing


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Meta's "Customer information parameters" page: input, expected SHA-256.
META_PUBLISHED = [
    ("em", "John_Smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("fn", "Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("fn", "정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
    ("fn", "Valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
]


@pytest.mark.parametrize(("field", "raw", "expected"), META_PUBLISHED)
def test_meta_published_examples(field, raw, expected):
    assert hashing.meta_hash(field, raw) == expected


def test_meta_phone_example_gains_its_country_code():
    # Meta's example: the US number (650)555-1212 is matched as 16505551212.
    expected = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    assert hashing.meta_hash("ph", "(650)555-1212", country="US") == expected
    assert hashing.meta_hash("ph", "+1 650-555-1212") == expected
    assert hashing.meta_hash("ph", "001 650 555 1212") == expected


def test_meta_keeps_dots_in_gmail_addresses():
    # The Gmail dot rule is Google's, not Meta's.
    assert hashing.meta_hash("em", " Jane.Doe@Gmail.com ") == sha("jane.doe@gmail.com")


@pytest.mark.parametrize(
    ("field", "raw", "normalized"),
    [
        ("ct", "Menlo Park", "menlopark"),
        ("st", "California", "ca"),
        ("st", "CA", "ca"),
        ("zp", "94025-1234", "94025"),
        ("zp", "SW1A 1AA", "sw1a1aa"),
        ("country", "US", "us"),
        ("db", "1997-02-16", "19970216"),
        ("ge", "Female", "f"),
        ("ln", "O'Brien", "obrien"),
    ],
)
def test_meta_field_normalization(field, raw, normalized):
    assert hashing.meta_hash(field, raw) == sha(normalized)


def test_google_gmail_dot_rule_applies_to_gmail_and_googlemail_only():
    assert hashing.google_hash_email(" Jane.Doe@Gmail.com ") == sha("janedoe@gmail.com")
    assert hashing.google_hash_email("jane.doe@googlemail.com") == sha("janedoe@googlemail.com")
    # Google's documentation limits the rule to those domains (one of its samples does not).
    assert hashing.google_hash_email("Jane.Doe@example.com") == sha("jane.doe@example.com")


def test_google_phone_is_e164_with_plus():
    assert hashing.google_hash_phone("+1 (650) 555-1212") == sha("+16505551212")
    assert hashing.google_hash_phone("0044 20 7946 0958") == sha("+442079460958")
    assert hashing.google_hash_phone("020 7946 0958", country="GB") == sha("+442079460958")


def test_a_hash_is_never_hashed_twice():
    digest = sha("jane@example.com")
    assert hashing.google_hash_email(digest) == digest
    assert hashing.google_hash_email(digest.upper()) == digest
    assert hashing.google_hash_phone(digest) == digest
    assert hashing.meta_hash("em", digest) == digest
    assert hashing.meta_hash("ph", f"  {digest} ") == digest


@pytest.mark.parametrize(
    ("call", "raw"),
    [
        (lambda v: hashing.google_hash_email(v), "not-an-email"),
        (lambda v: hashing.google_hash_phone(v), "650 555 1212"),  # national, no country
        (lambda v: hashing.google_hash_phone(v), "+12"),
        (lambda v: hashing.meta_hash("ge", v), "unknown"),
        (lambda v: hashing.meta_hash("db", v), "31/02/1990"),
        (lambda v: hashing.meta_hash("country", v), "United States"),
    ],
)
def test_errors_never_repeat_the_value(call, raw):
    with pytest.raises(hashing.IdentifierError) as excinfo:
        call(raw)
    assert raw not in str(excinfo.value)
