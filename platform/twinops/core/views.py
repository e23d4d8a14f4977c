"""Login with a rate limit on failed attempts, logout, and a health check."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET

from twinops.core.logins import lockout_minutes, login_failure_record, login_failures_clear, login_locked


def _attempt(request: HttpRequest) -> dict[str, str]:
    return {"username": request.POST.get("username") or "", "client": request.META.get("REMOTE_ADDR", "")}


@method_decorator(login_not_required, name="dispatch")
class RateLimitedLoginView(auth_views.LoginView):
    """Django's login, refusing further attempts for a while after too many failures."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        attempt = _attempt(request)
        if login_locked(**attempt):
            minutes = lockout_minutes()
            response = self.render_to_response(
                self.get_context_data(
                    form=self.get_form(),
                    rate_limited=f"Too many failed attempts. Try again in {minutes} minutes.",
                )
            )
            response.status_code = 429
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:  # form re-rendered: the attempt failed
            login_failure_record(**attempt)
        else:
            login_failures_clear(**attempt)
        return response


@login_not_required
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Report whether the database answers (for load balancers; says nothing else)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
