"""AllergyRevision.user without an index of its own: the unique (user, revision) constraint's index leads with
user_id and serves every read and cascade by user, so the second index only cost every PUT its upkeep.

Only the index is dropped (AlterField would also drop and re-add the foreign key, scanning the table to validate
it again); its name is the one Django gave it in 0003, the same on PostgreSQL and SQLite."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEX = "allergies_allergyrevision_user_id_750e41d6"


class Migration(migrations.Migration):

    dependencies = [
        ('allergies', '0003_allergy_revision_history'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "allergies_allergyrevision" ("user_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='allergyrevision',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='allergy_revisions', to=settings.AUTH_USER_MODEL),
                ),
            ],
        ),
    ]
