"""The real API (project.urls) plus the bench-only endpoints under /bench/."""
from django.urls import path

from bench import views
from project import urls as project_urls

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500

urlpatterns = [
    path("bench/ceiling/", views.CeilingView.as_view(), name="bench-ceiling"),
    path("bench/ceiling-auth/", views.CeilingAuthView.as_view(), name="bench-ceiling-auth"),
    path("bench/peer/allergies/", views.PeerAllergyProfileView.as_view(), name="bench-peer-allergies"),
    path("bench/sync/allergies/", views.SyncAllergiesView.as_view(), name="bench-sync-allergies"),
    *project_urls.urlpatterns,
]
