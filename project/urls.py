from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from consumers.console import operator_console_view
from identity.admin import admin_login, admin_password_change
from project import health, metrics_http

handler400 = "project.errors.json_bad_request"
handler403 = "project.errors.json_permission_denied"
handler404 = "project.errors.json_not_found"
handler500 = "project.errors.json_server_error"

urlpatterns = [
    path("admin/operations/", operator_console_view, name="operator-console"),
    # Throttled versions of two admin views; before admin.site.urls, which has the same paths.
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("identity.urls")),
    path("api/", include("allergies.urls")),
    path("api/", include("agent_bridge.urls")),
    # Probes: public, up/down only (project/health.py). /api/health/ is readiness, as before.
    path("api/health/", health.ReadyView.as_view(), name="health"),
    path("api/health/live/", health.LiveView.as_view(), name="health-live"),
    path("api/health/ready/", health.ReadyView.as_view(), name="health-ready"),
    # Prometheus, with METRICS_TOKEN only; outside /api/ and the schema.
    path("metrics", metrics_http.metrics_view, name="metrics"),
]
