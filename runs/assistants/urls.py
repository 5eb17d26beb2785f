"""Assistant routes (included before the API's catch-all)."""

from django.urls import path

from runs.assistants import views as assistants

urlpatterns = [
    path("assistants", assistants.assistant_list, name="assistants"),
    path("assistants/search", assistants.assistant_search, name="assistants-search"),
    path("assistants/count", assistants.assistant_count, name="assistants-count"),
    path("assistants/<str:assistant_id>", assistants.assistant_detail, name="assistant"),
    path("assistants/<str:assistant_id>/graph", assistants.assistant_graph, name="assistant-graph"),
    path(
        "assistants/<str:assistant_id>/schemas",
        assistants.assistant_schemas,
        name="assistant-schemas",
    ),
    path(
        "assistants/<str:assistant_id>/subgraphs",
        assistants.assistant_subgraphs,
        name="assistant-subgraphs",
    ),
    path(
        "assistants/<str:assistant_id>/subgraphs/<str:namespace>",
        assistants.assistant_namespace_subgraphs,
        name="assistant-subgraphs-namespace",
    ),
    path(
        "assistants/<str:assistant_id>/versions",
        assistants.assistant_versions,
        name="assistant-versions",
    ),
    path(
        "assistants/<str:assistant_id>/latest",
        assistants.assistant_latest,
        name="assistant-latest",
    ),
]
