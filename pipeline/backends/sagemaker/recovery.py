"""After a pipeline stopped mid-deployment -- killed, or cut off from its store -- AWS's state is the truth.

A SageMaker endpoint carries the tag ``mlops:verified-version``: the version a deployment or rollback verified
and judged good (``mark_verified``, after the tests passed and the switch was verified; never at ``stage``,
whose blue/green update already serves the candidate before it is tested). The next command that holds the
endpoint's lock reads the endpoint (``reconcile``) and the store records what it finds:

- the candidate serves and the tag names it: the deployment completed and only its record was lost
  (``deployed``);
- the candidate serves and was never judged: the previous version is put back, verified (``interrupted``), or a
  first endpoint that was never judged is deleted (``removed``);
- a SHADOW candidate still stands beside the serving version: the serving version alone again (``interrupted``);
- anything else serves: that is recorded as serving (``interrupted``); no endpoint: ``removed``.
"""
from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import Outcome
from pipeline.backends.sagemaker import versions
from pipeline.outcomes import FinalState

# ``endpoints`` below is the backend's ``Endpoints`` (pipeline/backends/sagemaker/endpoints.py), which calls these:
# typed Any, since importing it here would be an import cycle.
Endpoints = Any

log = logging.getLogger(__package__)

TAG_VERIFIED = "mlops:verified-version"


def mark_verified(endpoints: Endpoints, endpoint_arn: str, version: str) -> None:
    """Tag the endpoint with the version just verified; a tag that cannot be written is said, never fatal (the
    next reconciliation then rolls the version back rather than trusting it)."""
    try:
        endpoints.aws.sagemaker.add_tags(ResourceArn=endpoint_arn, Tags=[{"Key": TAG_VERIFIED, "Value": version}])
    except (ClientError, BotoCoreError) as err:
        log.warning("could not tag endpoint %s as verified on %s: %s", endpoint_arn, version,
                    endpoints.aws.error(err, "tag").message)


def verified_version(endpoints: Endpoints, endpoint_arn: str) -> str | None:
    try:
        tags = endpoints.aws.sagemaker.list_tags(ResourceArn=endpoint_arn)["Tags"]
    except (ClientError, BotoCoreError) as err:
        raise endpoints.aws.error(err, "read the tags of the endpoint") from None
    return next((tag["Value"] for tag in tags if tag["Key"] == TAG_VERIFIED), None)


def reconcile(endpoints: Endpoints, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
    previous, version = deployment["from_version"], deployment["to_version"]
    description = endpoints._settle(endpoint_name)
    if description is None:
        return Outcome(FinalState.REMOVED, None, f"endpoint {endpoint_name} no longer exists in {endpoints.aws.region}")
    config_name = description.get("EndpointConfigName") or ""
    if previous and config_name in {f"{version}-{role}" for role in versions.DERIVED_ROLES}:
        outcome = endpoints.rollback(endpoint_name, previous)
        versions.delete_derived(endpoints.aws, version)
        return Outcome(FinalState.INTERRUPTED, previous, f"{version} no longer stands beside it: {outcome.detail}")
    serving = endpoints._serving_version(config_name)
    if serving != version:
        return Outcome(FinalState.INTERRUPTED, serving, f"AWS serves {serving}" + (
            "" if serving == previous else f" (neither {previous or 'nothing'} nor {version}): recorded as serving"))
    healthy = description["EndpointStatus"] == "InService" and not description.get("FailureReason")
    if healthy and verified_version(endpoints, description["EndpointArn"]) == version:
        return Outcome(FinalState.DEPLOYED, version, f"AWS serves {version}, verified and judged good by its "
                                                     f"deployment before the store could record it")
    if previous:
        outcome = endpoints.rollback(endpoint_name, previous)
        return Outcome(FinalState.INTERRUPTED, previous, f"{version} served without being judged: {outcome.detail}")
    endpoints._delete_endpoint(endpoint_name)
    return Outcome(FinalState.REMOVED, None, f"{version}, the first version of {endpoint_name}, was never judged: "
                                             f"the endpoint was deleted")
