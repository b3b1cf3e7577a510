"""Formerly created the outbox NOTIFY trigger; that now belongs to the app that owns the table
(agent_bridge migration 0005_outbox_notify_trigger, which replaces it in place). Kept, empty, so
that databases that applied it keep a consistent history."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("consumers", "0001_initial"),
        ("agent_bridge", "0001_initial"),
    ]

    operations = []
