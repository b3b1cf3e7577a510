from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from identity.admin import admin_login, admin_password_change
from project.errors import unrouted
from project.schema import SchemaView

handler400 = "project.errors.json_bad_request"
handler403 = "project.errors.json_permission_denied"
handler404 = "project.errors.json_not_found"
handler500 = "project.errors.json_server_error"

urlpatterns = [
    # Throttled versions of two admin views; before admin.site.urls, which has the same paths.
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("identity.urls")),
    path("api/", include("allergies.urls")),
    path("api/", include("agent_bridge.urls")),
    path("api/", include("consumers.urls")),
]
# Last: every other path answers JSON (a 308 to the slashed path when that exists), in DEBUG too.
urlpatterns.append(re_path(r"^(?P<path>.*)$", unrouted))
