"""Hash scheme 2: each event keeps the canonical JSON text its hash covers; events before it stay scheme 1.

Adding columns with a database default rewrites no row (no UPDATE trigger fires), so existing events keep their
hashes and still verify under scheme 1; the defaults stay, so a row inserted without them is scheme 1 too.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [
        migrations.AddField(
            model_name="auditevent", name="scheme", field=models.PositiveSmallIntegerField(default=1, db_default=1)
        ),
        migrations.AddField(
            model_name="auditevent", name="canonical", field=models.TextField(default="", db_default="")
        ),
    ]
