"""The options of one run, as the command line gave them."""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    strict: bool = False
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    start_at: str | None = None
    step_mode: bool = False
    on_failure: str | None = None  # stop | rollback; None: the runbook's own setting
    limit: str | None = None  # --limit: fnmatch patterns (comma-separated) over target names

    def selects_tags(self, tags: frozenset) -> bool:
        """Whether ``--tags``/``--skip-tags`` keep a step with these tags."""
        if self.tags and not (tags & self.tags or "always" in tags):
            return False
        return not (self.skip_tags and tags & self.skip_tags)

    def selects_target(self, name: str) -> bool:
        """Whether ``--limit`` keeps this target (Ansible's habit: ``db*,!db3``)."""
        if not self.limit:
            return True
        patterns = [p.strip() for p in self.limit.split(",") if p.strip()]
        keep = [p for p in patterns if not p.startswith("!")]
        drop = [p[1:] for p in patterns if p.startswith("!")]
        return ((not keep or any(fnmatchcase(name, p) for p in keep))
                and not any(fnmatchcase(name, p) for p in drop))
