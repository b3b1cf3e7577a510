from django.urls import path

from allergies import views

urlpatterns = [
    path("allergies/", views.AllergyProfileView.as_view(), name="allergies"),
    path("allergens/", views.AllergenListView.as_view(), name="allergens"),
]
