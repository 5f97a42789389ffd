"""The postgres family of actions: ``ping``, ``query``, ``execute`` (``query.py``),
``dump``, ``restore`` (``backup.py``), ``replication`` and ``promote``
(``replication.py``). The session, queries and client programs they share live in
``engine.connections.postgres``; masking in ``engine.secrets``.

Passwords come from the DSN (rendered from inventory secrets), ``PGPASSWORD``
or a passfile. They never appear in a plan, a result, a message or an
exception: every DSN shown goes through ``mask_dsn``, every server or tool
message through ``sanitize``.

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so psycopg is imported only when a step runs.
"""
ACTIONS: dict[str, str] = {
    "postgres.ping": "engine.actions.postgres.query:Ping",
    "postgres.query": "engine.actions.postgres.query:Query",
    "postgres.execute": "engine.actions.postgres.query:Execute",
    "postgres.dump": "engine.actions.postgres.backup:Dump",
    "postgres.restore": "engine.actions.postgres.backup:Restore",
    "postgres.replication": "engine.actions.postgres.replication:Replication",
    "postgres.promote": "engine.actions.postgres.replication:Promote",
}
