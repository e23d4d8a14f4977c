"""Training jobs remember when their task was last sent, so a message lost by the broker is sent again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("modeling", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="trainingjob",
            name="sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
