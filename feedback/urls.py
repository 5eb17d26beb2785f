from django.urls import path

from feedback import views

one_run = "threads/<str:thread_id>/runs/<str:run_id>"

urlpatterns = [
    path(f"{one_run}/feedback", views.RunFeedbackView.as_view(), name="run-feedback"),
    path(
        f"{one_run}/feedback/stats",
        views.RunFeedbackStatsView.as_view(),
        name="run-feedback-stats",
    ),
    path(
        "threads/<str:thread_id>/feedback",
        views.ThreadFeedbackView.as_view(),
        name="thread-feedback",
    ),
]
