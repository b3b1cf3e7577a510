from django.urls import path

from identity import account_views, views

urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
    path("verify/resend/", views.ResendVerificationView.as_view(), name="verify-resend"),
    path("verify/<str:token>/", views.VerifyEmailView.as_view(), name="verify"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("logout/all/", views.LogoutAllView.as_view(), name="logout-all"),
    path("me/", views.MeView.as_view(), name="me"),
    path("password/change/", views.PasswordChangeView.as_view(), name="password-change"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password/reset/confirm/", views.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("account/", views.AccountView.as_view(), name="account"),
    path("preferences/", views.PreferencesView.as_view(), name="preferences"),
    path("email/change/", account_views.EmailChangeView.as_view(), name="email-change"),
    path("email/change/confirm/", account_views.EmailChangeConfirmView.as_view(), name="email-change-confirm"),
    path("sessions/", account_views.SessionListView.as_view(), name="sessions"),
    path("sessions/<int:session_id>/", account_views.SessionView.as_view(), name="session"),
    path("notifications/", account_views.NotificationSettingsView.as_view(), name="notifications"),
    path("account/export/", account_views.AccountExportView.as_view(), name="account-export"),
    path("internal/validate-token/", views.ValidateTokenView.as_view(), name="validate-token"),
]
