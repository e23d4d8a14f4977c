# API tokens carry the lines they may write. Tokens issued before this migration wrote every line; they keep doing
# so (all_lines = true), so no historian bridge stops at the upgrade. New tokens name their lines, or are issued
# site-wide explicitly (`twinops token issue … --all-lines`). `twinops token list` shows each token's scope.

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="all_lines",
            field=models.BooleanField(default=True),  # existing rows: site-wide, as they were
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="all_lines",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="lines",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=63), blank=True, default=list, size=None
            ),
        ),
    ]
