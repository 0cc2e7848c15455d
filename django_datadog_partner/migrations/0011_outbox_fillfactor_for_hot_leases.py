"""Leave most of every outbox page free on PostgreSQL, so leasing a row is a HOT update.

A claim leases a run of consecutive due rows: each of them gets a new version at once, on
its own page if there is room (a heap-only tuple: no new entry in any index, since the
lease's columns are in none), else on another page with a new entry in every index. Full
pages made ~97% of the lease updates write three index entries each, most of a claim's
time in the database. Filled to 40%, a page has room for the leased version of each of its
rows (which is ~40 bytes longer: the token and the time), with some to spare for the next
write; a renewal finds the previous version pruned. Rows written before this migration
keep their pages as they are. Other databases have no fillfactor: nothing to do there.
"""

from django.db import migrations

FILLFACTOR = 40


def set_fillfactor(apps, schema_editor):
    _alter(apps, schema_editor, f"SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    _alter(apps, schema_editor, "RESET (fillfactor)")


def _alter(apps, schema_editor, change):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("datadog_partner", "OutboxEvent")._meta.db_table
    schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} {change}")


class Migration(migrations.Migration):
    dependencies = [
        ("datadog_partner", "0010_connection_health_sweep_index"),
    ]

    operations = [
        migrations.RunPython(set_fillfactor, reset_fillfactor),
    ]
