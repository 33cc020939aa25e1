"""JWT endpoints: obtain, refresh (rotating; a reused refresh token is 401), blacklist."""

from django.conf import settings
from django.urls import path
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.permissions import AllowAny
from rest_framework_simplejwt import views as jwt_views

from adsplatform.throttling import ClientAddressScopedRateThrottle


class _Throttled:
    """Password guessing and token replay are throttled per client address."""

    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (ClientAddressScopedRateThrottle,)
    throttle_scope = "auth"


class LockedOut(Throttled):
    default_detail = "Too many failed logins for this user from this address; try again later."
    default_code = "locked_out"


class TokenObtainView(_Throttled, jwt_views.TokenObtainPairView):  # type: ignore[misc]  # the stubs type these views' classes as ()
    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            # django-axes marks the DRF request it was handed; its middleware only sees the
            # Django request, so a lockout would otherwise read as a wrong password.
            if getattr(request, "axes_locked_out", False):
                raise LockedOut(wait=settings.AXES_COOLOFF_TIME.total_seconds()) from None
            raise


class TokenRefreshView(_Throttled, jwt_views.TokenRefreshView):  # type: ignore[misc]  # the stubs type these views' classes as ()
    pass


class TokenBlacklistView(_Throttled, jwt_views.TokenBlacklistView):  # type: ignore[misc]  # the stubs type these views' classes as ()
    pass


urlpatterns = [
    path("token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
]
