"""PostgreSQL only: NOTIFY on OUTBOX_NOTIFY_CHANNEL when an outbox row becomes pending, so the relay
and the embedded consumer wake at commit instead of polling (agent_bridge.transports.notify).

This trigger used to be created by consumers migration 0002 (now empty); it belongs to the app
that owns the table. CREATE OR REPLACE / DROP IF EXISTS make it safe on databases that already
have it.
"""
from django.db import migrations

from agent_bridge.models import OUTBOX_NOTIFY_CHANNEL

CREATE = f"""
CREATE OR REPLACE FUNCTION kairos_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Same channel and payload: PostgreSQL folds a transaction's notifications into one.
    PERFORM pg_notify('{OUTBOX_NOTIFY_CHANNEL}', '');
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
        ("agent_bridge", "0004_outboxevent_traceparent"),
        # Runs after the old home of this trigger, which now does nothing.
        ("consumers", "0002_outbox_notify"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
