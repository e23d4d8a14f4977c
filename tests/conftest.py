"""Test-wide fixtures: users in each role. The database is the real embedded PostgreSQL (see config/embedded.py).

The suite runs on a TWINOPS_HOME of its own (`./.twinops-test` with TWINOPS_ENV=test, as `scripts/test` sets it),
never on the demo's `./.twinops`; the embedded servers it starts stop when the test process exits (embedded.py
releases them even while broker and cache connections are still open).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from twinops.config.database_roles import OWNER_ROLE, SUPERUSER, database_owner
from twinops.config.embedded import PROJECT_ROOT, data_home


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run on the demo's data home: its servers and data are not the tests' to touch."""
    if data_home() == (PROJECT_ROOT / ".twinops").resolve():
        raise pytest.UsageError(
            "the tests would share ./.twinops with the demo: run them with TWINOPS_ENV=test (scripts/test does) "
            "or give them a TWINOPS_HOME of their own"
        )


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """Create and migrate the test database as the owner role, as production does; the tests connect as the app.

    The suite then runs with the application's role (config/database_roles.py): what it may not do, the tests may
    not either. Flushing between transactional tests empties every table, the audit log too, so it runs as the owner.
    """
    from django.core.management.commands import flush
    from django.test.utils import setup_databases, teardown_databases

    keepdb = django_db_keepdb and not django_db_createdb
    with django_db_blocker.unblock(), database_owner():
        db_cfg = setup_databases(verbosity=request.config.option.verbose, interactive=False, keepdb=keepdb)
    handle = flush.Command.handle

    def flush_as_owner(self: Any, **options: Any) -> None:
        with database_owner(options["database"]):
            handle(self, **options)

    flush.Command.handle = flush_as_owner
    yield
    flush.Command.handle = handle
    if not keepdb:
        with django_db_blocker.unblock(), database_owner():
            teardown_databases(db_cfg, verbosity=request.config.option.verbose)


@pytest.fixture
def database_superuser() -> str:
    """Connect the test's database connection as the server's superuser, as an attacker with full access would.

    For tests that tamper with the audit log behind its privileges and triggers. The switch happens before the
    test's transaction begins (see `pytest_fixture_setup` below) and is undone after the test.
    """
    return SUPERUSER


@pytest.fixture
def database_owner_role() -> str:
    """Connect the test's database connection as the owner role, for tests that migrate inside their transaction."""
    return OWNER_ROLE


_AS_ROLE = ("database_superuser", "database_owner_role")  # fixtures that switch the test's connection


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None]:
    """Before such a test's database transaction begins, connect as the role it asks for."""
    if fixturedef.argname == "_django_db_helper":
        if "database_superuser" in request.fixturenames:
            _connect_as_superuser()
        elif "database_owner_role" in request.fixturenames:
            from django.db import connections

            connections["default"].close()
            with database_owner():
                connections["default"].close()
                owner = connections["default"].settings_dict
            connections["default"].settings_dict = owner
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None]:
    """After such a test (its transaction rolled back), connect as the application again."""
    yield
    if set(_AS_ROLE) & set(getattr(item, "fixturenames", ())):
        from django.conf import settings
        from django.db import connections

        conn = connections["default"]
        conn.close()
        conn.settings_dict = settings.DATABASES["default"]


def _connect_as_superuser() -> None:
    from django.conf import settings
    from django.db import connections

    passfile = data_home() / "postgres-auth" / f"{SUPERUSER}.pgpass"
    if not passfile.exists():
        pytest.skip("needs the embedded server's superuser (an external DATABASE_URL is in use)")
    conn = connections["default"]
    conn.close()
    app = settings.DATABASES["default"]
    conn.settings_dict = {
        **app,
        "USER": SUPERUSER,
        "PASSWORD": "",
        "OPTIONS": {**app["OPTIONS"], "passfile": str(passfile)},
    }


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    """Create a user in the given role (engineer, data, auditor, admin) with a known password."""
    from django.contrib.auth.models import Group, User

    def make(role: str, username: str | None = None, password: str = "correct-horse-battery") -> Any:
        user = User.objects.create_user(username=username or f"{role}-user", password=password)
        user.groups.add(Group.objects.get(name=role))
        return user

    return make
