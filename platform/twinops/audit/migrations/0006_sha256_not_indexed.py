"""No index on the event hash: nothing looks an event up by it, and its random keys made most of the log's WAL.

The unique index (and Django's `varchar_pattern_ops` twin of it) put every append on a random leaf page of two
1M-entry indexes, so after each checkpoint nearly every append wrote full-page images: 11-13 kB of WAL per event
against 1.1 kB without them (`twinops bench audit`'s table, 8 writers). Uniqueness of the hash guarded nothing: the
id is the key, and the chain's links and the signed anchors are what detect a changed or forged event.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_append_function")]
    operations = [
        migrations.AlterField(model_name="auditevent", name="sha256", field=models.CharField(max_length=64)),
    ]
