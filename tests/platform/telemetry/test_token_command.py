"""`twinops token`: a token names the lines it may write, or is issued site-wide on purpose; tokens issued before
tokens carried lines keep writing every line."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from twinops.accounts.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)  # the migration test moves the schema back and forth


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("token", *args, stdout=out)
    return out.getvalue()


def test_issuing_a_token_needs_its_lines_or_all_lines(line, make_user) -> None:
    make_user("data", username="bridge")
    with pytest.raises(CommandError, match="one of the arguments --line --all-lines is required"):
        _run("issue", "bridge", "--name", "historian")
    with pytest.raises(CommandError, match="no line 'kiln'; known lines: reactor"):
        _run("issue", "bridge", "--name", "historian", "--line", "kiln")
    assert ApiToken.objects.count() == 0
    assert "may write reactor" in _run("issue", "bridge", "--name", "historian", "--line", "reactor")
    assert "may write all lines" in _run("issue", "bridge", "--name", "everything", "--all-lines")
    listed = _run("list")
    assert "reactor" in listed.splitlines()[0] and "all lines" in listed.splitlines()[1]


def test_tokens_issued_before_the_upgrade_keep_writing_every_line(make_user, database_owner_role) -> None:
    user = make_user("data", username="bridge")
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0001_initial")])
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO core_apitoken (user_id, name, prefix, secret_sha256, created_at) "
            "VALUES (%s, 'old bridge', 'abcd1234', %s, now())",
            [user.pk, "0" * 64],
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    old = ApiToken.objects.get(prefix="abcd1234")
    assert (old.all_lines, old.lines, old.may_write("any-line")) == (True, [], True)
