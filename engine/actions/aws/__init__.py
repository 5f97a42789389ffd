"""The aws family of actions (its verbs are filled in by the aws issue).

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so nothing heavy is imported until a step uses
a verb of this family.
"""
ACTIONS: dict[str, str] = {}
