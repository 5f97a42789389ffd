"""The ssh family of actions: ``ssh.copy`` (upload) and ``ssh.fetch`` (download).

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so nothing heavy is imported until a step uses
a verb of this family. ``command``, ``shell``, ``file.*`` and ``wait_for`` run on
a target's host too (see ``engine.actions.core``).
"""
ACTIONS: dict[str, str] = {
    "ssh.copy": "engine.actions.ssh.copy:Copy",
    "ssh.fetch": "engine.actions.ssh.fetch:Fetch",
}
