"""Remember when beat sent a dead worker's slot again, so it is sent once, not every minute while it waits."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recommendations", "0006_recommendation_released_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="recommendationattempt",
            name="sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
