"""JSON bodies with a nesting limit, for DRF views and for views that read ``request.body``.

Python's decoder recurses once per level: a 1 MB body of ``[`` (well under
MAX_REQUEST_BODY_BYTES) ends in RecursionError, a 500, and deeply nested but decodable bodies
cost every later walk over them. No payload the platform takes comes near the limit.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

DEFAULT_MAX_DEPTH = 32
# Strings may hold brackets; they are cut out before counting (escaped quotes included).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class JSONTooDeep(ParseError):
    default_code = "json_too_deep"


def max_json_depth() -> int:
    return int(getattr(settings, "JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH))


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when arrays/objects in ``raw`` nest deeper than ``limit``; stops at the first excess.

    Works on the bytes before decoding, at C speed for all but the brackets themselves.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET)
    return len(brackets) > limit and _deeper(brackets, limit)


def _deeper(brackets: bytes, limit: int) -> bool:
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_json_depth(raw: bytes, limit: int | None = None) -> None:
    """Raise JSONTooDeep (a 400 ParseError) when ``raw`` nests deeper than the limit."""
    limit = max_json_depth() if limit is None else limit
    if json_depth_exceeds(raw, limit):
        raise JSONTooDeep(f"The JSON body nests deeper than {limit} levels.")


def loads_limited(raw: bytes, *, limit: int | None = None, strict: bool = True) -> Any:
    """``json.loads`` for request bodies: depth-checked first, errors as ParseError (400)."""
    check_json_depth(raw, limit)
    try:
        # DRF's json wrapper types its argument as str; the standard library's loads takes bytes too.
        return json.loads(raw) if strict else json.loads(raw, parse_constant=None)  # type: ignore[arg-type]
    except RecursionError:  # a limit configured above what the interpreter can decode
        raise JSONTooDeep("The JSON body nests too deeply to decode.") from None
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSONParser, refusing bodies nested deeper than JSON_MAX_DEPTH with a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return super().parse(stream, media_type, parser_context)
        raw = stream.read()
        check_json_depth(raw)
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            return json.loads(text) if self.strict else json.loads(text, parse_constant=None)
        except RecursionError:
            raise JSONTooDeep("The JSON body nests too deeply to decode.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
