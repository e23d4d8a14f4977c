"""The line an event concerns, for the auditor's line filter, and indexes for keyset paging of each filter.

The column has a database default, so adding it rewrites no row (no UPDATE trigger fires) and older events keep
their hashes.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_canonical_hash_scheme")]
    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="line_key",
            field=models.CharField(blank=True, default="", db_default="", max_length=100),
        ),
        migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["line_key", "id"], name="audit_line_id_idx")
        ),
        migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["action", "id"], name="audit_action_id_idx")
        ),
        migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["actor_label", "id"], name="audit_actor_id_idx")
        ),
    ]
