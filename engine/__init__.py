"""runbook-engine: declarative runbooks for disaster recovery and incident response."""

__version__ = "0.1.0"
