"""Read settings from the environment with one set of rules; a malformed value fails loudly, naming its variable.

`config/settings.py` (beside this module) reads the environment with `env_*`. The apps' `conf.py` read `setting_*`: a Django setting of
the same name (tests override those), else the environment variable, else the default. Numbers must be finite:
"inf" and "nan" are refused like any other typo.
"""

from __future__ import annotations

import ipaddress
import math
import os
import zoneinfo
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def parse_bool(name: str, raw: Any) -> bool:
    """Return a yes/no value given as 1/0, true/false, yes/no or on/off (any case)."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def parse_int(name: str, raw: Any, *, minimum: int | None = None) -> int:
    """Return a whole number, at least `minimum` when given (floats and text such as "1e3" are refused)."""
    if isinstance(raw, bool | float):
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be an integer >= {minimum}, not {raw!r}")
    return value


def parse_positive(name: str, raw: Any) -> float:
    """Return a finite number > 0 (infinity and NaN are refused)."""
    try:
        value = float(str(raw).strip()) if not isinstance(raw, bool) else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ImproperlyConfigured(f"{name} must be a finite number > 0, not {raw!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    """Return the environment variable `name` as a boolean, or `default` when it is unset."""
    raw = os.environ.get(name)
    return default if raw is None else parse_bool(name, raw)


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the environment variable `name` as an integer, or `default` when it is unset."""
    raw = os.environ.get(name)
    return default if raw is None else parse_int(name, raw, minimum=minimum)


def env_positive(name: str, default: float) -> float:
    """Return the environment variable `name` as a finite number > 0, or `default` when it is unset."""
    raw = os.environ.get(name)
    return default if raw is None else parse_positive(name, raw)


def setting_raw(name: str, default: Any) -> Any:
    """Return the Django setting `name` if set, else the environment variable `name`, else `default`."""
    value = getattr(settings, name, None)
    return os.environ.get(name, default) if value is None else value


def setting_positive(name: str, default: float) -> float:
    """Return the setting `name` (see `setting_raw`) as a finite number > 0."""
    return parse_positive(name, setting_raw(name, default))


def setting_positive_int(name: str, default: int) -> int:
    """Return the setting `name` (see `setting_raw`) as an integer >= 1."""
    return parse_int(name, setting_raw(name, default), minimum=1)


def env_time_zone(name: str, default: str) -> str:
    """Return an IANA time-zone name from the environment; a zone this machine does not know stops start-up."""
    raw = os.environ.get(name, "").strip() or default
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a time zone this machine knows (e.g. Europe/Berlin)"
        ) from None
    return raw


def parse_networks(name: str, raw: Any) -> tuple[str, ...]:
    """Return comma-separated IP addresses or networks (10.0.0.5, 10.0.0.0/8, fd00::/8) in canonical form."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    networks = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks separated by commas (e.g. 10.0.0.5,10.1.0.0/16), "
                f"and {item!r} is neither"
            ) from None
    return tuple(networks)


def env_networks(name: str) -> tuple[str, ...]:
    """Return the environment variable `name` as IP networks (see parse_networks); none when it is unset."""
    return parse_networks(name, os.environ.get(name, ""))
