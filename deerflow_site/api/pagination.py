"""limit/offset windows with the X-Pagination-* headers the contract names."""

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter

from deerflow_site.api.serializers import BoundedIntegerField, RequestSerializer


class LimitOffsetSerializer(RequestSerializer):
    """`limit` (1 to 1000, default 10) and `offset` (≥ 0) of a list request: the request
    serializers of lists extend it."""

    limit = BoundedIntegerField(min_value=1, max_value=1000, default=10)
    offset = BoundedIntegerField(min_value=0, default=0)


#: The headers as the OpenAPI schema documents them: `extend_schema(parameters=...)` of a list.
PAGINATION_HEADERS = [
    OpenApiParameter(
        "X-Pagination-Total",
        int,
        OpenApiParameter.HEADER,
        response=[200],
        description="how many match, in all windows",
    ),
    OpenApiParameter(
        "X-Pagination-Next",
        int,
        OpenApiParameter.HEADER,
        response=[200],
        description="the offset of the next window; absent on the last one",
    ),
]


def pagination_headers(*, total: int, limit: int, offset: int) -> dict[str, str]:
    """`X-Pagination-Total`, and `X-Pagination-Next` (the next offset) when more remain."""
    headers = {"X-Pagination-Total": str(total)}
    if offset + limit < total:
        headers["X-Pagination-Next"] = str(offset + limit)
    return headers


def page(queryset: QuerySet | Sequence[Any], *, limit: int, offset: int) -> tuple[list, int]:
    """One window of a queryset and the total count."""
    total = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)
    return list(queryset[offset : offset + limit]), total
