from django.urls import path

from threads import views

urlpatterns = [
    path("threads", views.ThreadListView.as_view(), name="threads"),
    path("threads/search", views.ThreadSearchView.as_view(), name="threads-search"),
    path("threads/count", views.ThreadCountView.as_view(), name="threads-count"),
    path("threads/<str:thread_id>", views.ThreadDetailView.as_view(), name="thread"),
]
