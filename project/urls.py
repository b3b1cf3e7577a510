from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from identity.admin import admin_login, admin_password_change

handler400 = "project.errors.json_bad_request"
handler403 = "project.errors.json_permission_denied"
handler404 = "project.errors.json_not_found"
handler500 = "project.errors.json_server_error"

urlpatterns = [
    # Throttled versions of two admin views; before admin.site.urls, which has the same paths.
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("identity.urls")),
    path("api/", include("allergies.urls")),
    path("api/", include("agent_bridge.urls")),
    path("api/", include("consumers.urls")),
]
