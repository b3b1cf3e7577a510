"""allergies.models: the schema the hot path writes."""
import pytest
from django.db import connection

from allergies.models import AllergyRevision


@pytest.mark.django_db
def test_history_rows_keep_one_index_by_user() -> None:
    """Every PUT inserts a history row: the unique (user, revision) index serves reads and cascades by user, and
    no second index on user_id alone is kept up to date beside it (migration 0004)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AllergyRevision._meta.db_table)
    # A unique constraint is an index too (SQLite's introspection reports it as unique only).
    by_user = [name for name, c in constraints.items()
               if (c["index"] or c["unique"]) and c["columns"][:1] == ["user_id"]]
    assert len(by_user) == 1
    assert constraints[by_user[0]]["columns"] == ["user_id", "revision"] and constraints[by_user[0]]["unique"]
    # The foreign key itself stays.
    assert any(c["foreign_key"] and c["columns"] == ["user_id"] for c in constraints.values())
