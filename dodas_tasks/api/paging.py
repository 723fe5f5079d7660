"""Spring Data paging as orchestrator clients send it (page, size, sort=property,direction) and the HATEOAS page
links they follow (self, first, prev, next, last)."""

from __future__ import annotations

from fastapi import Request

from dodas_tasks.api.errors import ApiError
from dodas_tasks.api.models import PageInfo
from dodas_tasks.deploy.orchestrator_view import Link

DEFAULT_SORT = ("createdAt,desc",)
SORT_FIELDS = {  # the orchestrator's property names → the store's
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "status": "status",
    "uuid": "id",
    "cloudProviderName": "cloud",
}


def store_sort(sort: list[str] | None) -> list[tuple[str, bool]]:
    """`sort=createdAt,desc` (repeatable; direction asc by default) → (store field, descending) pairs."""
    out = []
    for item in sort or DEFAULT_SORT:
        name, _, direction = item.partition(",")
        if name not in SORT_FIELDS:
            raise ApiError(400, f"cannot sort by {name!r}; use one of {', '.join(SORT_FIELDS)} (e.g. createdAt,desc)")
        if direction.lower() not in ("", "asc", "desc"):
            raise ApiError(400, f"sort direction must be asc or desc, got {direction!r}")
        out.append((SORT_FIELDS[name], direction.lower() == "desc"))
    return out


def page_size(size: int | None, default: int, maximum: int) -> int:
    if size is None:
        return default
    if not 1 <= size <= maximum:
        raise ApiError(400, f"size must be between 1 and {maximum}, got {size}")
    return size


def page_info(total: int, number: int, size: int) -> PageInfo:
    return PageInfo(size=size, totalElements=total, totalPages=-(-total // size), number=number)


def page_links(request: Request, info: PageInfo) -> list[Link]:
    """Links to this page and its neighbours, keeping the caller's other query parameters."""

    def to(number: int) -> str:
        return str(request.url.include_query_params(page=number, size=info.size))

    links = [Link(rel="self", href=to(info.number))]
    if info.totalPages > 1:
        links.append(Link(rel="first", href=to(0)))
    if info.number > 0:
        links.append(Link(rel="prev", href=to(info.number - 1)))
    if info.number + 1 < info.totalPages:
        links.append(Link(rel="next", href=to(info.number + 1)))
    if info.totalPages > 1:
        links.append(Link(rel="last", href=to(info.totalPages - 1)))
    return links
