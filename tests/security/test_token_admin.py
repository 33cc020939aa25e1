"""The admin lists who holds tokens and until when, never a token's text."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(user):
    """A refresh token issued through the API, one more blacklisted by logging out."""
    client = APIClient()
    live = client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json").json()
    gone = client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json").json()
    assert client.post("/api/v1/auth/token/blacklist/", {"refresh": gone["refresh"]}, format="json").status_code == 200
    return live["refresh"], gone["refresh"]


def _pages(client, model, pk: int) -> list[bytes]:
    base = f"/admin/token_blacklist/{model._meta.model_name}/"
    pages = [client.get(base), client.get(f"{base}{pk}/change/"), client.get(base, {"q": "a"})]
    assert [page.status_code for page in pages] == [200, 200, 200]
    return [page.content for page in pages]


def test_no_admin_page_shows_a_token(client, staff_user, user, issued):
    client.force_login(staff_user)
    live, gone = issued
    outstanding = OutstandingToken.objects.get(token=live)
    blacklisted = BlacklistedToken.objects.get(token__token=gone)
    pages = _pages(client, OutstandingToken, outstanding.pk) + _pages(client, BlacklistedToken, blacklisted.pk)
    for content in pages:
        for token in (live, gone):
            assert token.encode() not in content
            # Not even a recognisable part of it (the signature, or the payload).
            for part in token.split(".")[1:]:
                assert part.encode() not in content
    # What operators do need is there.
    assert user.username.encode() in pages[0]
    assert b"Expires at" in pages[0] or b"expires at" in pages[0].lower()


def test_search_by_username_does_not_search_token_text(client, staff_user, user, issued):
    client.force_login(staff_user)
    live, _ = issued
    found = client.get("/admin/token_blacklist/outstandingtoken/", {"q": user.username})
    assert found.status_code == 200 and b"2 Outstanding" in found.content.replace(b"\n", b" ")
    by_token = client.get("/admin/token_blacklist/outstandingtoken/", {"q": live.split(".")[2][:20]})
    assert b"0 Outstanding" in by_token.content.replace(b"\n", b" ")
