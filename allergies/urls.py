from django.urls import path

from allergies import views

urlpatterns = [
    path("allergies/", views.AllergyProfileView.as_view(), name="allergies"),
    path("allergies/history/", views.AllergyHistoryView.as_view(), name="allergies-history"),
    path("allergens/", views.AllergenListView.as_view(), name="allergens"),
]
