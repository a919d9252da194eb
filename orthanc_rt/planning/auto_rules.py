"""Automatic planning rules: when a structure set arrives with a target ROI, plan it with a named protocol.

Configured in Orthanc's configuration (`OrthancRT.AutoPlanning`):

    "AutoPlanning": {
      "Enabled": true,
      "Protocols": {"proton-2beam-2Gy": {"prescription_gy": 2.0, "beam_count": 2}},
      "Rules": [{"Name": "ptv", "TargetPattern": "PTV.*|CTV.*|TargetVolume",
                 "Workflow": "proton-impt", "Protocol": "proton-2beam-2Gy", "Enabled": true}]
    }

`Settings.auto_planning` holds that section as configured; `AutoPlanning.from_config`
reads it. A protocol is a plan request without its target; the rule's pattern picks
the target (the first ROI, in structure-set order, whose whole name matches,
case-insensitively). A rule that cannot work (bad pattern, unknown workflow
or protocol, protocol values out of range) is switched off and its problem
is reported in /rt/health; the others keep working.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning import request as pr
from orthanc_rt.planning.protocols import SITE_PROTOCOLS
from orthanc_rt.settings import WORKER_ONLY, Settings

_PLANNING_WORKFLOWS = ("proton-impt", "proton-robust")


@dataclass(frozen=True)
class PlanningRule:
    name: str
    target_pattern: str
    workflow: str
    protocol: str
    enabled: bool = True

    def target_in(self, roi_names: Sequence[str]) -> str | None:
        """The first ROI whose whole name matches the pattern (case-insensitive), else None."""
        pattern = re.compile(self.target_pattern, re.IGNORECASE)
        return next((name for name in roi_names if pattern.fullmatch(name)), None)


@dataclass(frozen=True)
class AutoPlanning:
    enabled: bool = False
    rules: tuple[PlanningRule, ...] = ()
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "AutoPlanning":
        rules = tuple(PlanningRule(name=str(r.get("Name", f"rule-{i}")), target_pattern=str(r.get("TargetPattern", "")),
                                   workflow=str(r.get("Workflow", "proton-impt")), protocol=str(r.get("Protocol", "")),
                                   enabled=bool(r.get("Enabled", True)))
                      for i, r in enumerate(cfg.get("Rules", []), start=1) if isinstance(r, Mapping))
        protocols = {str(k): dict(v) for k, v in dict(cfg.get("Protocols", {})).items() if isinstance(v, Mapping)}
        return cls(enabled=bool(cfg.get("Enabled", bool(rules))), rules=rules, protocols=protocols)

    @classmethod
    def of(cls, settings: Settings) -> "AutoPlanning":
        """The rules `settings` were configured with (they keep `OrthancRT.AutoPlanning` as written)."""
        return cls.from_config(settings.auto_planning)

    def summary(self) -> dict[str, Any]:
        """The rules as /rt/health and the audit trail show them, with why broken ones do not run."""
        return {"enabled": self.enabled,
                "rules": [{"name": r.name, "target_pattern": r.target_pattern, "workflow": r.workflow,
                           "protocol": r.protocol, "enabled": r.enabled}
                          for r in self.rules],
                "problems": self.problems()}

    def problems(self) -> dict[str, str]:
        """{rule name: why it cannot run} for every enabled rule that is misconfigured."""
        found = {}
        for rule in self.rules:
            if not rule.enabled:
                continue
            try:
                self.request_for(rule, "ROI")
            except (PlanRequestError, re.error) as exc:
                found[rule.name] = str(exc)
        return found

    def active_rules(self) -> list[PlanningRule]:
        if not self.enabled:
            return []
        broken = self.problems()
        return [rule for rule in self.rules if rule.enabled and rule.name not in broken]

    def request_for(self, rule: PlanningRule, target_roi: str) -> pr.PlanRequest:
        """The rule's protocol as a request on `target_roi` (PlanRequestError when the rule cannot work)."""
        re.compile(rule.target_pattern)
        if not rule.target_pattern:
            raise PlanRequestError(f"rule {rule.name}: TargetPattern is empty")
        if rule.workflow not in _PLANNING_WORKFLOWS:
            raise PlanRequestError(f"rule {rule.name}: workflow {rule.workflow!r} cannot plan automatically; "
                                      f"use one of {', '.join(_PLANNING_WORKFLOWS)}")
        # A name of the configuration's Protocols, else a site protocol (orthanc_rt.planning.protocols: "prostate").
        if rule.protocol in self.protocols:
            fields = dict(self.protocols[rule.protocol])
        elif rule.protocol in SITE_PROTOCOLS:
            fields = {"protocol": rule.protocol}
        else:
            raise PlanRequestError(f"rule {rule.name}: protocol {rule.protocol!r} is not in Protocols "
                                   f"({', '.join(sorted(self.protocols)) or 'none defined'}) nor a site protocol "
                                   f"({', '.join(SITE_PROTOCOLS)})")
        request = pr.PlanRequest.from_dict({**fields, "target_roi": target_roi})
        pr.validate_parameters(request)
        return request


def shown_settings(settings: Settings) -> dict[str, Any]:
    """What /rt/health and the audit trail show of the plugin's `settings`: `Settings.redacted()` without what only
    workers use (each worker's own values are in /rt/health's workers check), and the planning rules."""
    shown = {key: value for key, value in settings.redacted().items() if key not in WORKER_ONLY}
    return {**shown, "auto_planning": AutoPlanning.of(settings).summary()}
