"""Count the workers that started each line's slot, so a recommendation whose worker keeps dying fails, once."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("lines", "0001_initial"),
        ("recommendations", "0004_outcomes"),
    ]

    operations = [
        migrations.CreateModel(
            name="RecommendationAttempt",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slot", models.DateTimeField()),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("started_at", models.DateTimeField()),
                (
                    "line",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="lines.line"),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("line", "slot"), name="one_attempt_counter_per_line_slot")
                ],
            },
        ),
    ]
