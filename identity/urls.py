from django.urls import path

from identity import views

urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
]
