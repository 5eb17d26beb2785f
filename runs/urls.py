from django.urls import path

from deerflow_site.api.async_views import by_method
from runs import cancel_views, join_views, stream_views, views
from runs.journal import views as journal_views

thread_runs = "threads/<str:thread_id>/runs"
one_run = f"{thread_runs}/<str:run_id>"
create_and_stream = by_method(post=stream_views.create_and_stream)
create_and_wait = by_method(post=stream_views.create_and_wait)

urlpatterns = [
    path(thread_runs, views.ThreadRunsView.as_view(), name="thread-runs"),
    path(f"{thread_runs}/stream", create_and_stream, name="thread-runs-stream"),
    path(f"{thread_runs}/wait", create_and_wait, name="thread-runs-wait"),
    path(one_run, views.RunDetailView.as_view(), name="run"),
    path(f"{one_run}/cancel", by_method(post=cancel_views.cancel), name="run-cancel"),
    path(f"{one_run}/join", by_method(get=join_views.join, streams=True), name="run-join"),
    path(
        f"{one_run}/stream",
        by_method(get=join_views.join_stream, post=join_views.join_stream, streams=True),
        name="run-stream",
    ),
    path(
        "threads/<str:thread_id>/stream",
        by_method(get=stream_views.thread_stream, streams=True),
        name="thread-stream",
    ),
    path(f"{one_run}/messages", journal_views.RunMessagesView.as_view(), name="run-messages"),
    path(f"{one_run}/events", journal_views.RunEventsView.as_view(), name="run-events"),
    path(
        "threads/<str:thread_id>/messages",
        journal_views.ThreadMessagesView.as_view(),
        name="thread-messages",
    ),
    path(
        "threads/<str:thread_id>/token-usage",
        journal_views.ThreadTokenUsageView.as_view(),
        name="thread-token-usage",
    ),
    path("runs", views.StatelessRunsView.as_view(), name="runs"),
    path("runs/stream", create_and_stream, name="runs-stream"),
    path("runs/wait", create_and_wait, name="runs-wait"),
    path("runs/batch", views.RunBatchView.as_view(), name="runs-batch"),
    path("runs/cancel", cancel_views.BulkCancelView.as_view(), name="runs-cancel"),
]
