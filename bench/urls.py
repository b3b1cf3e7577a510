"""The real API (project.urls) plus the bench-only endpoints under /api/bench/: under /api/, so that they pass
through exactly the middleware the API's requests pass through (project.middleware skips the admin's there)."""
from django.urls import path

from bench import views
from project import urls as project_urls

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500

urlpatterns = [
    path("api/bench/ceiling/", views.CeilingView.as_view(), name="bench-ceiling"),
    path("api/bench/ceiling-auth/", views.CeilingAuthView.as_view(), name="bench-ceiling-auth"),
    path("api/bench/peer/allergies/", views.PeerAllergyProfileView.as_view(), name="bench-peer-allergies"),
    path("api/bench/sync/allergies/", views.SyncAllergiesView.as_view(), name="bench-sync-allergies"),
    *project_urls.urlpatterns,
]
