"""The chain's append as one PL/pgSQL function: the lock, the head read and the insert with its hash.

PL/pgSQL keeps each statement's plan for the session, where the same INSERT … SELECT sent as text was parsed and
planned again for every event: most of the database's CPU per append (`twinops bench audit`). It runs with the
caller's rights (SECURITY INVOKER): the application's role appends with its own INSERT and SELECT on the table and
gains nothing; only the owner role (which runs migrations) may replace it. A volatile function's statements each take
a new snapshot, so the head is read after the lock is granted and sees every event committed before it. The hash is
canonical.event_sha256's: sha256 of the UTF-8 bytes of previous hash + canonical text, the canonical text being
prefix + id + suffix (canonical_around_id).
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION audit_append(
    p_lock bigint, p_genesis text, p_occurred_at timestamptz, p_actor_id bigint, p_actor text, p_action text,
    p_object_type text, p_object_id text, p_reason text, p_before jsonb, p_after jsonb, p_prefix text,
    p_suffix text, p_scheme smallint, p_line text
) RETURNS TABLE (event_id bigint, event_prev_sha256 text, event_sha256 text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    head_id bigint;
    head_sha256 text;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT e.id, e.sha256 INTO head_id, head_sha256 FROM audit_auditevent AS e ORDER BY e.id DESC LIMIT 1;
    IF NOT FOUND THEN
        head_id := 0;
        head_sha256 := p_genesis;
    END IF;
    RETURN QUERY
    INSERT INTO audit_auditevent AS a (id, occurred_at, actor_id, actor_label, action, object_type, object_id,
        reason, before, after, prev_sha256, sha256, scheme, canonical, line_key)
    VALUES (head_id + 1, p_occurred_at, p_actor_id, p_actor, p_action, p_object_type, p_object_id, p_reason,
        p_before, p_after, head_sha256,
        encode(sha256(convert_to(head_sha256 || p_prefix || (head_id + 1) || p_suffix, 'UTF8')), 'hex'),
        p_scheme, p_prefix || (head_id + 1) || p_suffix, p_line)
    RETURNING a.id, a.prev_sha256::text, a.sha256::text;
END
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS audit_append(bigint, text, timestamptz, bigint, text, text, text, text, text, jsonb, jsonb,
    text, text, smallint, text);
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_line_key_and_filter_indexes")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
