"""Query parameters, strictly: every API view refuses a blank value and a nameless parameter.

"?status=" and a stray "=" are a client's mistake; treating them as "no filter" would
quietly answer with more rows than it asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import ValidationError

MUST_NOT_BE_EMPTY = "Must not be empty; leave the parameter out instead."
NAMELESS = "A query parameter has no name (a stray '=' in the query string)."


def blank_parameter_errors(query_params, *, names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Errors by parameter for blank values (of ``names`` only, when given) and a nameless one."""
    errors = {
        name: [MUST_NOT_BE_EMPTY]
        for name in (query_params.keys() if names is None else names)
        if "" in query_params.getlist(name)
    }
    if "" in query_params:
        errors[""] = [NAMELESS]
    return errors


def validated_query(params_class, request, *, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's query parameters through ``params_class`` (a DRF serializer); 400 when wrong."""
    errors = blank_parameter_errors(request.query_params)
    if errors:
        raise ValidationError(errors)
    params = params_class(data=request.query_params, context=context or {})
    params.is_valid(raise_exception=True)
    return params.validated_data
