from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                ("digest", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("hits", models.PositiveIntegerField()),
                ("expires_at", models.BigIntegerField(db_index=True)),
            ],
            options={"db_table": "throttling_counter"},
        ),
    ]
