from django.urls import path

from consumers import views

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
]
