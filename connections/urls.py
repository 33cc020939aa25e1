"""The browser flows under /connect/ (staff, admin role on every account)."""

from django.urls import path

from connections import views

urlpatterns = [
    path("google/", views.connect_google, name="connect-google"),
    path("google/callback", views.connect_google_callback, name="connect-google-callback"),
    path("google/service-account/", views.connect_google_service_account, name="connect-google-service-account"),
    path("meta/", views.connect_meta, name="connect-meta"),
    path("meta/callback", views.connect_meta_callback, name="connect-meta-callback"),
    path("meta/system-user/", views.connect_meta_system_user, name="connect-meta-system-user"),
    path("<int:connection_id>/accounts/", views.connect_accounts, name="connect-accounts"),
    path("<int:connection_id>/disconnect/", views.connect_disconnect, name="connect-disconnect"),
]
