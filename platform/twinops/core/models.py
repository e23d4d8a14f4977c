"""The capabilities' permission holder (API tokens are the accounts app's)."""

from __future__ import annotations

from django.db import models

from twinops.core.capabilities import CAPABILITIES


class Capability(models.Model):
    """Holds the capability permissions; no rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = list(CAPABILITIES.items())
