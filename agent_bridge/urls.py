from django.urls import path

from agent_bridge import views

urlpatterns = [
    path("interactions/", views.InteractionsView.as_view(), name="interactions"),
]
