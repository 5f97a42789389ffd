"""The kubernetes family: ``get`` and ``wait`` (read.py), ``scale`` and
``rollout_restart`` (scale.py), ``patch`` (patch.py), ``apply`` and ``delete``
(apply.py). They share the object reference and resource keys (refs.py), the
located objects and their requests (objects.py), the diff of live object against
the server's answer (diff.py), kubectl's rollout rule (rollout.py) and the watch
loop (waiting.py); the client is ``engine.connections.kubernetes``.

Every ``plan()`` asks the server itself (``dryRun=All``) and diffs the live object
against the answer, so a refusal (a 404, a forbidden namespace, a dropped field) is a
finding of the rehearsal, before the incident.

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so nothing heavy is imported until a step uses
a verb of this family.
"""
ACTIONS: dict[str, str] = {
    "kubernetes.get": "engine.actions.kubernetes.read:Get",
    "kubernetes.wait": "engine.actions.kubernetes.read:Wait",
    "kubernetes.scale": "engine.actions.kubernetes.scale:Scale",
    "kubernetes.rollout_restart": "engine.actions.kubernetes.scale:RolloutRestart",
    "kubernetes.patch": "engine.actions.kubernetes.patch:Patch",
    "kubernetes.apply": "engine.actions.kubernetes.apply:Apply",
    "kubernetes.delete": "engine.actions.kubernetes.apply:Delete",
}
