from django.urls import path

from agent_bridge import views

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
]
