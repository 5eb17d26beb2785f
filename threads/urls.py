from django.urls import path

from threads import state_views, views

urlpatterns = [
    path("threads", views.ThreadListView.as_view(), name="threads"),
    path("threads/search", views.ThreadSearchView.as_view(), name="threads-search"),
    path("threads/count", views.ThreadCountView.as_view(), name="threads-count"),
    path("threads/prune", views.ThreadPruneView.as_view(), name="threads-prune"),
    path("threads/<str:thread_id>", views.ThreadDetailView.as_view(), name="thread"),
    path("threads/<str:thread_id>/state", state_views.thread_state, name="thread-state"),
    path(
        "threads/<str:thread_id>/state/checkpoint",
        state_views.thread_state_checkpoint,
        name="thread-state-checkpoint",
    ),
    path(
        "threads/<str:thread_id>/state/<str:checkpoint_id>",
        state_views.thread_state_at,
        name="thread-state-at",
    ),
    path("threads/<str:thread_id>/history", state_views.thread_history, name="thread-history"),
    path("threads/<str:thread_id>/copy", state_views.thread_copy, name="thread-copy"),
]
