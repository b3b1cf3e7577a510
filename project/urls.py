from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from consumers.console import operator_console_view
from identity.admin import admin_login, admin_password_change
from project import health, metrics_http
from project.errors import unrouted
from project.schema import SchemaView

handler400 = "project.errors.json_bad_request"
handler403 = "project.errors.json_permission_denied"
handler404 = "project.errors.json_not_found"
handler500 = "project.errors.json_server_error"

urlpatterns = [
    # First: the allergy profile is the most requested route, and Django tries the patterns in order (~25
    # failed matches before it otherwise, ~5 % of a GET). No other route overlaps its paths.
    path("api/", include("allergies.urls")),
    path("admin/operations/", operator_console_view, name="operator-console"),
    # Throttled versions of two admin views; before admin.site.urls, which has the same paths.
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("identity.urls")),
    path("api/", include("agent_bridge.urls")),
    # Probes: public, up/down only (project/health.py). /api/health/ is readiness, as before.
    path("api/health/", health.ReadyView.as_view(), name="health"),
    path("api/health/live/", health.LiveView.as_view(), name="health-live"),
    path("api/health/ready/", health.ReadyView.as_view(), name="health-ready"),
    # Prometheus, with METRICS_TOKEN only; outside /api/ and the schema.
    path("metrics", metrics_http.metrics_view, name="metrics"),
]
# Last: every other path answers JSON (a 308 to the slashed path when that exists), in DEBUG too.
# Named so that the request metrics count these under one `<unmatched>` route (project/middleware.py).
urlpatterns.append(re_path(r"^(?P<path>.*)$", unrouted, name="unrouted"))
