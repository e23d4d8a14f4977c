"""Connected as the application's database role, nothing can change the audit log except appending to it.

The suite runs as that role (tests/conftest.py migrates as the owner and connects as the application), so these
statements are refused by PostgreSQL's privileges, not by the trigger: the messages say "permission denied" or
"must be owner", and TRUNCATE, which the trigger lets through in test databases, is refused too.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify, audit_record
from twinops.config.database_roles import APP_ROLE, OWNER_ROLE

pytestmark = pytest.mark.django_db

_APPEND_ARGS = (
    "bigint, text, timestamptz, bigint, text, text, text, text, text, jsonb, jsonb, text, text, smallint, text"
)
TAMPERS = {
    "update": ("UPDATE audit_auditevent SET reason = 'rewritten'", "permission denied for table audit_auditevent"),
    "delete": ("DELETE FROM audit_auditevent", "permission denied for table audit_auditevent"),
    "truncate": ("TRUNCATE audit_auditevent", "permission denied for table audit_auditevent"),
    "disable trigger": ("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL", "must be owner of table"),
    "replica role": ("SET session_replication_role = replica", 'permission denied to set parameter "session_replica'),
    "drop trigger": ("DROP TRIGGER audit_event_no_update_delete ON audit_auditevent", "must be owner of relation"),
    "drop function": ("DROP FUNCTION audit_event_refuse_change() CASCADE", "must be owner of function"),
    "make the append run as its owner": (
        f"ALTER FUNCTION audit_append({_APPEND_ARGS}) SECURITY DEFINER",
        "must be owner of function audit_append",
    ),
    "drop the append": (f"DROP FUNCTION audit_append({_APPEND_ARGS})", "must be owner of function audit_append"),
    "take ownership": (f"ALTER TABLE audit_auditevent OWNER TO {APP_ROLE}", "must be owner of table"),
    "drop table": ("DROP TABLE audit_auditevent CASCADE", "must be owner of table"),
}


def _three_events() -> list[AuditEvent]:
    with transaction.atomic():
        return [
            audit_record(actor="system:test", action="test.done", object_type="x", object_id=str(i), after={"i": i})
            for i in range(3)
        ]


def _raw(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cur:  # a savepoint: the refusal leaves the test's transaction
        cur.execute(sql)


def test_the_application_connects_as_a_role_that_is_no_superuser_and_owns_no_audit_object() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert cur.fetchone() == (APP_ROLE, False, False, False)
        cur.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'audit_auditevent' UNION ALL "
            "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname LIKE 'audit\\_event\\_refuse\\_%%'"
        )
        assert [owner for (owner,) in cur.fetchall()] == [OWNER_ROLE] * 3
        cur.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = 'audit_auditevent' AND grantee = %s ORDER BY 1",
            [APP_ROLE],
        )
        assert [p for (p,) in cur.fetchall()] == ["INSERT", "SELECT"]


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_the_application_role_cannot_change_the_audit_log(tamper: str) -> None:
    events = _three_events()
    sql, refusal = TAMPERS[tamper]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
        try:
            _raw(sql)
        except Exception as exc:  # Django wraps the driver's error; the driver's class says which refusal it was
            raise (exc.__cause__ or exc) from None
    assert list(AuditEvent.objects.values_list("reason", flat=True)) == ["", "", ""]
    with connection.cursor() as cur:
        cur.execute("SHOW session_replication_role")
        assert cur.fetchone() == ("origin",)
        cur.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass AND tgenabled = 'O' "
            "AND NOT tgisinternal"
        )
        assert cur.fetchone() == (2,)  # both triggers still there and firing
    check = audit_chain_verify()
    assert check.ok and check.checked == len(events)


def test_granting_itself_more_changes_nothing() -> None:
    _three_events()
    _raw(f"GRANT UPDATE, DELETE, TRUNCATE ON audit_auditevent TO {APP_ROLE}")  # a warning: it holds no grant option
    with pytest.raises(Exception, match="permission denied for table audit_auditevent"):
        _raw("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 3


def test_audit_record_still_appends_and_the_chain_verifies() -> None:
    events = _three_events()
    with transaction.atomic():
        more = audit_record(actor="system:test", action="test.more", object_type="x", object_id="4", reason="why")
    assert more.id == events[-1].id + 1
    assert more.prev_sha256 == events[-1].sha256
    assert audit_chain_verify().ok


def test_the_application_keeps_its_other_rights_on_the_other_tables(make_user) -> None:  # noqa: ANN001
    user = make_user("data")
    user.first_name = "changed"
    user.save()
    user.delete()
    with connection.cursor() as cur:  # the samples table is the application's: it attaches partitions at run time
        cur.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'telemetry_sample'")
        assert cur.fetchone() == (APP_ROLE,)
