"""PostgreSQL only: NOTIFY kairos_outbox when an outbox row becomes pending, so the relay and the
embedded consumer wake at commit instead of polling (agent_bridge.transports.notify)."""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION kairos_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Same channel and payload: PostgreSQL folds a transaction's notifications into one.
    PERFORM pg_notify('kairos_outbox', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS kairos_outbox_notify ON agent_bridge_outboxevent;
CREATE TRIGGER kairos_outbox_notify
    AFTER INSERT OR UPDATE OF status ON agent_bridge_outboxevent
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION kairos_outbox_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS kairos_outbox_notify ON agent_bridge_outboxevent;
DROP FUNCTION IF EXISTS kairos_outbox_notify();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("consumers", "0001_initial"),
        ("agent_bridge", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
