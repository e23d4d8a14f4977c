"""Login with a rate limit on failed attempts, logout, and a health check."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET

from twinops.core.clients import client_address
from twinops.core.logins import (
    RateLimiterUnavailable,
    lockout_minutes,
    lockout_started,
    login_attempt_begin,
    login_failures_clear,
    login_locked_out,
)


def _attempt(request: HttpRequest) -> dict[str, str]:
    return {"username": request.POST.get("username") or "", "client": client_address(request)}


@method_decorator(login_not_required, name="dispatch")
class RateLimitedLoginView(auth_views.LoginView):
    """Django's login, refusing further attempts for a while after too many failures."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        attempt = _attempt(request)
        try:
            allowed = login_attempt_begin(**attempt)  # counted before the password is checked: no race to win
            if not allowed and lockout_started(**attempt):
                login_locked_out.send(sender=type(self), **attempt)
        except RateLimiterUnavailable as exc:  # uncounted guesses are not allowed: refuse, clearly, not with a 500
            return self._refused(str(exc), status=503)
        if not allowed:
            return self._refused(f"Too many failed attempts. Try again in {lockout_minutes()} minutes.", status=429)
        response = super().post(request, *args, **kwargs)
        if response.status_code != 200:  # not the form re-rendered: signed in
            login_failures_clear(**attempt)
        return response

    def _refused(self, message: str, *, status: int) -> HttpResponse:
        response = self.render_to_response(self.get_context_data(form=self.get_form(), rate_limited=message))
        response.status_code = status
        return response


@login_not_required
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Report whether the database answers (for load balancers; says nothing else)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
