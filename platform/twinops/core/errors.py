"""Styled 403 and 404 pages that say what happened and who can help, never Django's debug page with the URL map."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

TITLES = {403: "Not allowed", 404: "Not found"}
HELP = {
    403: "Your role does not allow this. An admin can give your account the role it needs.",
    404: "The page or the thing it shows does not exist (any more). Start again from the list of lines.",
}


def error_page(request: HttpRequest, status: int, message: str = "") -> HttpResponse:
    """Render the styled error page for `status` with the reason, if it is one a user may read."""
    response = render(
        request,
        "errors/error.html",
        {"status": status, "title": TITLES[status], "message": message, "help": HELP[status]},
        status=status,
    )
    response.twinops_error_page = True  # type: ignore[attr-defined]
    return response


class FriendlyErrorsMiddleware:
    """Turn 403 and 404 answers to browser pages into the styled page, also with DEBUG on; APIs keep their JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code in TITLES
            and not getattr(response, "twinops_error_page", False)
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith("/api/")
        ):
            return error_page(request, response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith("/api/"):
            return None
        if isinstance(exception, Http404):
            return error_page(request, 404, str(exception))
        if isinstance(exception, PermissionDenied):
            return error_page(request, 403, str(exception))
        return None
