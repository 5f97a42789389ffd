"""The notify family: Slack, PagerDuty, e-mail, Statuspage and webhooks.

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so nothing is imported until a step uses a verb
of this family. The senders live in ``engine.connections.http`` and
``engine.connections.smtp``.
"""
ACTIONS: dict[str, str] = {
    "notify.slack": "engine.actions.notify.slack:Slack",
    "notify.pagerduty": "engine.actions.notify.pagerduty:PagerDuty",
    "notify.email": "engine.actions.notify.email:Email",
    "notify.statuspage": "engine.actions.notify.statuspage:Statuspage",
    "notify.webhook": "engine.actions.notify.webhook:Webhook",
}
