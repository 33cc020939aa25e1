"""Every list refuses a blank value and a nameless parameter (400 naming it), not "no filter"."""

from __future__ import annotations

import pytest

from adsplatform.query_params import MUST_NOT_BE_EMPTY, NAMELESS

pytestmark = pytest.mark.django_db

# One list per way the check is reached: serializer-parsed (campaigns, optimization), django-filter.
LISTS = ["/api/v1/campaigns/", "/api/v1/alerts/", "/api/v1/conversions/"]
BLANK_PARAMETER = {"/api/v1/campaigns/": "status", "/api/v1/alerts/": "state", "/api/v1/conversions/": "status"}


@pytest.mark.parametrize("path", LISTS)
def test_a_blank_value_is_refused_by_name(staff_client, path):
    name = BLANK_PARAMETER[path]
    response = staff_client.get(f"{path}?{name}=")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {name: [MUST_NOT_BE_EMPTY]}


@pytest.mark.parametrize("path", LISTS)
def test_a_nameless_parameter_is_refused(staff_client, path):
    response = staff_client.get(f"{path}?=oops")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"": [NAMELESS]}


@pytest.mark.parametrize("path", LISTS)
def test_credentials_are_checked_first(api_client, path):
    assert api_client.get(f"{path}?=oops").status_code == 401


def test_filter_lists_ignore_parameters_they_do_not_have(staff_client):
    assert staff_client.get("/api/v1/conversions/?not_a_filter=").status_code == 200
