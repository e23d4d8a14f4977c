"""Login with a rate limit on failed attempts, logout, and a health check."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET


def _attempt_key(request: HttpRequest) -> str:
    username = (request.POST.get("username") or "").strip().lower()
    client = request.META.get("REMOTE_ADDR", "")
    return "login-fail:" + hashlib.sha256(f"{username}|{client}".encode()).hexdigest()


@method_decorator(login_not_required, name="dispatch")
class RateLimitedLoginView(auth_views.LoginView):
    """Django's login, refusing further attempts for a while after too many failures."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        key = _attempt_key(request)
        if (cache.get(key) or 0) >= settings.LOGIN_RATE_LIMIT:
            minutes = max(1, settings.LOGIN_RATE_WINDOW_S // 60)
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
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=settings.LOGIN_RATE_WINDOW_S)
        else:
            cache.delete(key)
        return response


@login_not_required
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Report whether the database answers (for load balancers; says nothing else)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
