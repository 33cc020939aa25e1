"""Normalize and SHA-256 hash personal identifiers at the door, the way each platform matches them.

Google (enhanced conversions): trim, lowercase; Gmail / Googlemail addresses lose the dots of
the local part (Google's documentation says only those domains); phones in E.164 with the ``+``.
Meta (Conversions API customer information): trim, lowercase; phones as digits with the country
code and no ``+``; names without punctuation; city and state without digits, spaces and
punctuation; zip without spaces and without the ZIP+4 suffix; country as ISO 3166-1 alpha-2;
date of birth YYYYMMDD; gender ``f`` / ``m``.

A value that already is a SHA-256 hex digest passes through unchanged: hashing twice would
produce a value no platform can match. Errors never repeat the raw value (it may end up in a
log line or an API answer that is stored).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date

import phonenumbers

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

_US_STATES = {
    "alabama": "al",
    "alaska": "ak",
    "arizona": "az",
    "arkansas": "ar",
    "california": "ca",
    "colorado": "co",
    "connecticut": "ct",
    "delaware": "de",
    "florida": "fl",
    "georgia": "ga",
    "hawaii": "hi",
    "idaho": "id",
    "illinois": "il",
    "indiana": "in",
    "iowa": "ia",
    "kansas": "ks",
    "kentucky": "ky",
    "louisiana": "la",
    "maine": "me",
    "maryland": "md",
    "massachusetts": "ma",
    "michigan": "mi",
    "minnesota": "mn",
    "mississippi": "ms",
    "missouri": "mo",
    "montana": "mt",
    "nebraska": "ne",
    "nevada": "nv",
    "newhampshire": "nh",
    "newjersey": "nj",
    "newmexico": "nm",
    "newyork": "ny",
    "northcarolina": "nc",
    "northdakota": "nd",
    "ohio": "oh",
    "oklahoma": "ok",
    "oregon": "or",
    "pennsylvania": "pa",
    "rhodeisland": "ri",
    "southcarolina": "sc",
    "southdakota": "sd",
    "tennessee": "tn",
    "texas": "tx",
    "utah": "ut",
    "vermont": "vt",
    "virginia": "va",
    "washington": "wa",
    "westvirginia": "wv",
    "wisconsin": "wi",
    "wyoming": "wy",
    "districtofcolumbia": "dc",
}
_GENDERS = {"f": "f", "female": "f", "w": "f", "m": "m", "male": "m"}


class IdentifierError(ValueError):
    """A personal identifier cannot be normalized. The message never contains the value."""


def sha256_hex(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value.strip().lower()))


def _already_hashed(value: str) -> str | None:
    candidate = value.strip().lower()
    return candidate if _SHA256_HEX.match(candidate) else None


# --- Normalization ------------------------------------------------------------------------------


def normalize_email(value: str, *, gmail_dot_rule: bool) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise IdentifierError("Enter a valid email address.")
    local, _, domain = email.rpartition("@")
    if gmail_dot_rule and domain in _GMAIL_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def phone_e164(value: str, *, region: str = "") -> str:
    """The number in E.164 (``+`` country code, national number), or "" when it is not valid.

    Parsing and validation are libphonenumber's: per-country lengths and prefixes, the trunk
    ``0`` (also a bracketed ``(0)`` after the country code), extensions dropped. A number
    without ``+`` or ``00`` is national and needs ``region`` (ISO alpha-2, any case).
    """
    text = value.strip()
    # Most of the world dials 00 for abroad; senders write it even where the prefix differs.
    if text.startswith("00"):
        text = "+" + text[2:]
    known_region = _known_phone_region(region)
    if not text.startswith("+") and known_region is None:
        return ""
    try:
        number = phonenumbers.parse(text, known_region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_region_for_calling_code(calling_code: str) -> str:
    """The main region (ISO alpha-2) of a calling code such as "1" or "44"; "" when unknown."""
    if not calling_code.strip().isdigit():
        return ""
    region = phonenumbers.region_code_for_country_code(int(calling_code))
    return "" if region == phonenumbers.UNKNOWN_REGION else region


def phone_calling_code(e164: str) -> str:
    """The calling code of an E.164 number ("1", "44", "353"), or "" for anything else."""
    try:
        return str(phonenumbers.parse(e164, None).country_code)
    except phonenumbers.NumberParseException:
        return ""


def _known_phone_region(region: str) -> str | None:
    code = region.strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def normalize_phone_e164(value: str, *, country: str = "") -> str:
    """``+<country code><number>``. A national number needs ``country`` (ISO alpha-2)."""
    text = value.strip()
    if not text.startswith(("+", "00")) and _known_phone_region(country) is None:
        raise IdentifierError(
            "Give the phone number with its country code (E.164, e.g. +16505551212), "
            "or a national number together with the country."
        )
    e164 = phone_e164(text, region=country)
    if not e164:
        raise IdentifierError("Enter a valid phone number in E.164 form (e.g. +16505551212).")
    return e164


def _strip_accents_kept(value: str) -> str:
    # Meta asks for UTF-8 text, so letters with accents stay; NFC makes "é" one code point.
    return unicodedata.normalize("NFC", value)


def normalize_name(value: str) -> str:
    name = _strip_accents_kept(value.strip().lower())
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith(("P", "S")))
    name = re.sub(r"\s+", " ", name).strip()
    if not name:
        raise IdentifierError("Enter a name with at least one letter.")
    return name


def normalize_city(value: str) -> str:
    city = _strip_accents_kept(value.strip().lower())
    city = "".join(ch for ch in city if ch.isalpha())
    if not city:
        raise IdentifierError("Enter a city with at least one letter.")
    return city


def normalize_state(value: str) -> str:
    state = "".join(ch for ch in value.strip().lower() if ch.isalpha())
    state = _US_STATES.get(state, state)
    if not state:
        raise IdentifierError("Enter a state or province code.")
    return state


def normalize_zip(value: str) -> str:
    zip_code = re.sub(r"\s", "", value.strip().lower())
    # A US ZIP+4 is sent as its first five digits.
    if re.fullmatch(r"\d{5}-\d{4}", zip_code):
        zip_code = zip_code[:5]
    zip_code = zip_code.replace("-", "")
    if not zip_code.isalnum():
        raise IdentifierError("Enter a postal code of letters and digits.")
    return zip_code


def normalize_country(value: str) -> str:
    country = "".join(ch for ch in value.strip().lower() if ch.isalpha())
    if len(country) != 2:
        raise IdentifierError("Enter the country as a two-letter ISO 3166-1 code (e.g. us).")
    return country


def normalize_date_of_birth(value: str) -> str:
    digits = re.sub(r"[^0-9]", "", value.strip())
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) if len(digits) == 8 else None
    except ValueError:
        born = None
    if born is None or born.year < 1900 or born > date.today():
        raise IdentifierError("Enter the date of birth as YYYYMMDD (e.g. 19970216).")
    return born.strftime("%Y%m%d")


def normalize_gender(value: str) -> str:
    gender = _GENDERS.get(value.strip().lower())
    if gender is None:
        raise IdentifierError("Enter the gender as f or m.")
    return gender


# --- Hashing per platform -------------------------------------------------------------------------


def google_hash_email(value: str) -> str:
    return _already_hashed(value) or sha256_hex(normalize_email(value, gmail_dot_rule=True))


def google_hash_phone(value: str, *, country: str = "") -> str:
    return _already_hashed(value) or sha256_hex(normalize_phone_e164(value, country=country))


_META_NORMALIZERS = {
    "em": lambda v, _c: normalize_email(v, gmail_dot_rule=False),
    "ph": lambda v, c: normalize_phone_e164(v, country=c).lstrip("+"),
    "fn": lambda v, _c: normalize_name(v),
    "ln": lambda v, _c: normalize_name(v),
    "ct": lambda v, _c: normalize_city(v),
    "st": lambda v, _c: normalize_state(v),
    "zp": lambda v, _c: normalize_zip(v),
    "country": lambda v, _c: normalize_country(v),
    "db": lambda v, _c: normalize_date_of_birth(v),
    "ge": lambda v, _c: normalize_gender(v),
    # Meta recommends hashing external ids too; any stable string will do.
    "external_id": lambda v, _c: v.strip().lower(),
}
META_HASHED_FIELDS = tuple(_META_NORMALIZERS)


def meta_hash(field: str, value: str, *, country: str = "") -> str:
    """Meta's normalization for ``field`` (em, ph, fn, ...), then SHA-256; hashes pass through.

    ``country`` (ISO alpha-2, raw or normalized) lets a national phone number gain its code.
    """
    hashed = _already_hashed(value)
    if hashed:
        return hashed
    normalized = _META_NORMALIZERS[field](value, country)
    if not normalized:
        raise IdentifierError("This value is empty after normalization.")
    return sha256_hex(normalized)
