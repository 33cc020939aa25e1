"""Every app's api.py under /api/v1/, plus admin, schema and docs, metrics and health."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from adsplatform import auth_api, ops
from campaigns.api import CampaignListAliasView
from conversions.api import GoogleConversionIngestAliasView

api_v1 = [
    path("auth/", include(auth_api.urlpatterns)),
    path("", include("campaigns.api")),
    path("", include("conversions.api")),
    path("", include("webhooks.api")),
    path("", include("optimization.api")),
    path("", include("connections.api")),
    path("", include("optimization.change_api")),
    path("", include("campaigns.ad_group_api")),
]

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("connect/", include("connections.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as its own file (?script), so the page
    # needs no inline script under the Content-Security-Policy.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
    path("api/v1/", include(api_v1)),
    # The seed's original path, kept for clients written against it.
    path("api/campaigns", CampaignListAliasView.as_view(), name="campaign-list-alias"),
    path("v1/conversions/google", GoogleConversionIngestAliasView.as_view(), name="conversions-google-alias"),
]

admin.site.site_header = "IBVI Ads Platform"
admin.site.site_title = "IBVI Ads Platform"
admin.site.index_title = "Operator dashboard"

handler404 = "adsplatform.errors.handler404"
handler500 = "adsplatform.errors.handler500"
