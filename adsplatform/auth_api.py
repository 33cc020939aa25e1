"""JWT endpoints: obtain, refresh (rotating; a reused refresh token is 401), blacklist."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.throttling import ScopedRateThrottle
from rest_framework_simplejwt import views as jwt_views


class _Throttled:
    """Password guessing and token replay are throttled per client address."""

    permission_classes = (AllowAny,)
    authentication_classes = ()
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "auth"


class TokenObtainView(_Throttled, jwt_views.TokenObtainPairView):
    pass


class TokenRefreshView(_Throttled, jwt_views.TokenRefreshView):
    pass


class TokenBlacklistView(_Throttled, jwt_views.TokenBlacklistView):
    pass


urlpatterns = [
    path("token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
]
