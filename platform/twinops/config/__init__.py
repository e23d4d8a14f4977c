"""Project configuration: settings, environment parsing, embedded servers, and the Celery app.

The Celery app is imported with the package, so that every process that loads the settings (web server, CLI,
`twinops demo`) sends tasks through it, to the Redis broker, not through Celery's default app (AMQP on localhost).
"""

from twinops.config.celery import app as celery_app

__all__ = ["celery_app"]
