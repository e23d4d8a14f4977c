# ApiToken moved to the accounts app: Django's model state leaves core, the table (core_apitoken) stays.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="ApiToken")], database_operations=[]),
    ]
