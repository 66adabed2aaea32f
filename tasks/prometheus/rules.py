"""The recording and alerting rules shipped in files/prometheus/, adapted to the job name."""

from __future__ import annotations

import re

from tasks.prometheus.job import SHIPPED_JOB_NAME


# The rules file shipped in files/prometheus/ selects the job by this matcher;
# the deploy writes the configured job name in its place.
RULES_JOB_MATCHER = 'job="{job_name}"'
_RULES_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def rules_for_job(rules_text: str, job_name: str = SHIPPED_JOB_NAME) -> str:
    """The shipped rules text with every ``job="scaphandre"`` selector naming ``job_name``.

    Job names are limited to letters, digits, '_', '.' and '-' so that the name
    sits safely in both a PromQL string and a plain YAML value. Rules text that
    does not select the default job at all (it would not be ours) is refused.
    """
    if not isinstance(job_name, str) or not _RULES_JOB_NAME.match(job_name):
        raise ValueError(
            f"job name {job_name!r} cannot be written into the rules file: "
            "use letters, digits, '_', '.' and '-' only"
        )
    default = RULES_JOB_MATCHER.format(job_name=SHIPPED_JOB_NAME)
    if default not in rules_text:
        raise ValueError(f"the rules text has no {default} selector to adapt")
    return rules_text.replace(default, RULES_JOB_MATCHER.format(job_name=job_name))
