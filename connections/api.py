"""GET /api/v1/connections/ (admin role): each connection's platform, kind, status and expiry and
the accounts it reaches — never a credential."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import access
from campaigns.models import Platform
from connections import selectors
from connections.models import Connection


class ConnectionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    kind = serializers.ChoiceField(choices=Connection.Kind.choices)
    status = serializers.ChoiceField(choices=Connection.Status.choices)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the token expires; null: it does not.")
    accounts = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the ad accounts (GET /api/v1/accounts/) it reaches."
    )


class ConnectionListView(APIView):
    @extend_schema(operation_id="connections_list", responses=ConnectionSerializer(many=True))
    def get(self, request):
        if not access.has_role_anywhere(request.user, access.ADMIN):
            raise access.AccessDenied(access.ROLE_NEEDED[access.ADMIN], role_needed=access.ADMIN)
        rows = [
            {
                "id": connection.pk,
                "platform": connection.platform,
                "kind": connection.kind,
                "status": connection.status,
                "expires_at": connection.expires_at,
                "accounts": account_ids,
            }
            for connection, account_ids in selectors.connection_list(user=request.user)
        ]
        return Response(ConnectionSerializer(rows, many=True).data)


urlpatterns = [
    path("connections/", ConnectionListView.as_view(), name="connection-list"),
]
