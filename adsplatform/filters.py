"""The project's filter backend: django-filter, strict about what a client sends.

django-filter treats "?occurred_before=" as no filter and "?is_active=null" as unknown; a
client sending them made a mistake and would silently get more rows than it asked for.
"""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.utils.dateparse import parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError

from adsplatform.query_params import blank_parameter_errors

_BOOLEAN_VALUES = {"true", "false", "True", "False", "1", "0"}
# Real UTC offsets lie within ±14:00; PostgreSQL refuses anything much beyond.
_MAX_UTC_OFFSET = timedelta(hours=14)


def _offset_out_of_range(value: str) -> bool:
    try:
        moment = parse_datetime(value)
    except ValueError:
        return False  # malformed: the filter's own validation says so
    offset = moment.utcoffset() if moment else None
    return offset is not None and abs(offset) > _MAX_UTC_OFFSET


class StrictFilterBackend(DjangoFilterBackend):
    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is None:
            return None
        errors = blank_parameter_errors(request.query_params, names=filterset.filters)
        for name, field_filter in filterset.filters.items():
            for value in request.query_params.getlist(name):
                if value == "":
                    continue  # already said
                if isinstance(field_filter, django_filters.BooleanFilter) and value not in _BOOLEAN_VALUES:
                    errors[name] = ["Must be true or false."]
                elif isinstance(field_filter, django_filters.DateTimeFilter) and _offset_out_of_range(value):
                    errors[name] = ["The UTC offset must be within ±14:00."]
        if errors:
            raise ValidationError(errors)
        return filterset
