"""SageMaker endpoints: a stable name, switched between versions by blue/green updates.

The endpoint keeps its name: ``create_endpoint`` the first time, afterwards
``update_endpoint`` with a blue/green ``DeploymentConfig``. After ``InService``
the endpoint must run the intended config and carry no ``FailureReason``: an
update that AWS rolled back is a failed deployment. ``discard`` updates back to
the previous config, or deletes a first endpoint.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import DeploymentError, Outcome, Server, Staged
from pipeline.backends.sagemaker import artifacts, versions
from pipeline.backends.sagemaker.client import TRANSITIONAL, SageMakerEndpointClient
from pipeline.backends.sagemaker.errors import WaitTimeout, not_found, shorten
from pipeline.backends.sagemaker.session import (
    TAG_ACCURACY,
    TAG_RUN_ID,
    TAG_TRAINING_JOB,
    AwsSession,
)
from pipeline.errors import PipelineError
from pipeline.jobs import TrainingJob
from pipeline.outcomes import FinalState

if TYPE_CHECKING:
    from pipeline.store import DeploymentStore

log = logging.getLogger(__package__)  # one logger for the whole backend

MAX_WAIT_SECONDS = 3600  # TrafficRoutingConfig.WaitIntervalInSeconds and TerminationWaitInSeconds allow at most this
_VERSION_SUFFIX = r"-\d{8}-\d{6}(?:-\d+)?"


class Endpoints:
    def __init__(self, aws: AwsSession, store: DeploymentStore, backend_type: str) -> None:
        self.aws = aws
        self.config = aws.config
        self.store = store  # the versions an endpoint served, for remove
        self.backend_type = backend_type  # reported by describe

    def _describe_endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            return self.aws.sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as err:
            if not_found(err):
                return None
            raise self.aws.error(err, f"describe endpoint {name}") from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"describe endpoint {name}") from None

    def _settle(self, name: str) -> dict[str, Any] | None:
        """Wait while the endpoint is Creating/Updating/...; its description then, None once it is gone."""
        description = self._describe_endpoint(name)
        if description is None or description["EndpointStatus"] not in TRANSITIONAL:
            return description
        return self.aws.wait(f"endpoint {name}", lambda: self._describe_endpoint(name),
                             lambda d: d is None or d["EndpointStatus"] not in TRANSITIONAL,
                             lambda d: "deleted" if d is None else d["EndpointStatus"])

    def _verify(self, name: str, version: str, previous: str | None = None) -> dict[str, Any]:
        """``InService`` on config ``version`` with no ``FailureReason``, else DeploymentError."""
        description = self._settle(name)
        if description is None:
            raise DeploymentError(f"SageMaker endpoint {name!r} does not exist in {self.aws.region}")
        status = description["EndpointStatus"]
        config = description.get("EndpointConfigName")
        reason = description.get("FailureReason")
        if status != "InService":
            raise DeploymentError(f"SageMaker endpoint {name!r} is {status} instead of InService"
                                  f"{': ' + shorten(reason) if reason else ''}")
        if config != version:
            rolled = "AWS rolled the update back: " if previous and config == previous else ""
            raise DeploymentError(f"SageMaker endpoint {name!r} runs endpoint config {config}, not {version}; "
                                  f"{rolled}{shorten(reason) if reason else 'no failure reason given'}")
        if reason:
            raise DeploymentError(f"SageMaker endpoint {name!r} on {version} reports a failure: {shorten(reason)}")
        return description

    def _deployment_config(self, rollback: bool = False) -> dict[str, Any]:
        """Blue/green: traffic routing and baking period from the config; a rollback goes at once."""
        if rollback:  # no alarms: the alarms that fired may still be firing and would undo the rollback
            return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE",
                                                                              "WaitIntervalInSeconds": 0},
                                              "TerminationWaitInSeconds": 0}}
        baking = int(self.config.baking_period_minutes * 60)
        routing: dict[str, Any] = {"Type": self.config.traffic_routing, "WaitIntervalInSeconds": baking}
        step = {"Type": "CAPACITY_PERCENT", "Value": self.config.canary_percent}
        if self.config.traffic_routing == "CANARY":
            routing["CanarySize"] = step
        elif self.config.traffic_routing == "LINEAR":
            routing["LinearStepSize"] = step
        deployment: dict[str, Any] = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing,
                                                                "TerminationWaitInSeconds": 0}}
        if self.config.rollback_alarm_names:
            deployment["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": alarm} for alarm in self.config.rollback_alarm_names]}
        return deployment

    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        current = self._settle(endpoint_name)  # an update still running would refuse ours
        if current is not None and current["EndpointStatus"] != "InService":
            # Failed (or stuck) endpoints cannot be updated; a new one takes its place.
            log.warning("endpoint %s is %s (%s): deleting it to create it again", endpoint_name,
                        current["EndpointStatus"], current.get("FailureReason") or "no reason given")
            self._delete_endpoint(endpoint_name)
            current = None
        previous = current["EndpointConfigName"] if current else None
        tags = self.aws.tags(job.name, job.metrics.get("accuracy"))
        versions.create(self.aws, version, job, tags)
        url = self.aws.url(endpoint_name)
        if current is None:
            log.info("creating SageMaker endpoint %s with %s (%d x %s)", endpoint_name, version,
                     self.config.instance_count, self.config.instance_type)
            self.aws.call(self.aws.sagemaker, "create_endpoint", f"create endpoint {endpoint_name}",
                          EndpointName=endpoint_name, EndpointConfigName=version, Tags=tags)
        else:
            log.info("updating SageMaker endpoint %s from %s to %s (blue/green, %s)", endpoint_name, previous,
                     version, self.config.traffic_routing)
            self.aws.call(self.aws.sagemaker, "update_endpoint", f"update endpoint {endpoint_name}",
                          EndpointName=endpoint_name, EndpointConfigName=version,
                          DeploymentConfig=self._deployment_config())
        try:
            description = self._verify(endpoint_name, version, previous)
        except WaitTimeout as failure:  # still changing: nothing can be undone before it ends
            raise WaitTimeout(f"{failure.message}; the endpoint is still changing: check it in the SageMaker console "
                              f"and run again (or roll back) once it is InService") from None
        except DeploymentError as failure:
            raise DeploymentError(failure.message + self._undo_stage(endpoint_name, previous)) from None
        self.aws.call(self.aws.sagemaker, "add_tags", f"tag endpoint {endpoint_name}",
                      ResourceArn=description["EndpointArn"], Tags=tags)
        server = Server(url, resources={"endpoint_config": version, "region": self.aws.region})
        return Staged(endpoint_name, version, previous, server, server, beside_stable=False)

    def _undo_stage(self, endpoint_name: str, previous: str | None) -> str:
        """After a failed stage, leave what served before (or no endpoint); says what was done."""
        try:
            if previous is None:  # a first endpoint that failed serves nothing: do not leave it behind
                self._delete_endpoint(endpoint_name)
                return "; the endpoint was deleted"
            current = self._describe_endpoint(endpoint_name)
            if current is not None and current.get("EndpointConfigName") == previous:
                return f"; {previous} still serves"
            self.rollback(endpoint_name, previous)
            return f"; rolled back to {previous}"
        except PipelineError as err:
            return f"; undoing it failed too: {err.message}"

    def client(self, endpoint_name: str, server: Server) -> SageMakerEndpointClient:
        name = endpoint_name
        if self._describe_endpoint(name) is None:
            raise DeploymentError(f"SageMaker endpoint {name!r} does not exist in {self.aws.region} (deleted "
                                  f"outside the pipeline?): deploy again, or forget it with --mode cleanup "
                                  f"--endpoint-name {name}")
        return SageMakerEndpointClient(self.aws, name, server.url)

    def serving(self, endpoint_name: str) -> Server:
        row = self.store.require_endpoint(endpoint_name)
        return Server(row["url"] or self.aws.url(endpoint_name),
                      resources={"endpoint_config": row["serving_version"] or "", "region": self.aws.region})

    def serving_model(self, endpoint_name: str, scratch: Path) -> tuple[str, Path] | None:
        """The model of the endpoint's current config, read back from S3: what really serves, whatever
        the store thinks."""
        description = self._describe_endpoint(endpoint_name)
        if description is None or not description.get("EndpointConfigName"):
            return None
        version = description["EndpointConfigName"]
        try:
            config = self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=version)
            model = self.aws.sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        except (ClientError, BotoCoreError) as err:
            raise self.aws.error(err, f"describe the model of endpoint config {version}") from None
        target = scratch / version
        archive = scratch / f"{version}.tar.gz"
        self.aws.get(model["PrimaryContainer"]["ModelDataUrl"], archive)
        artifacts.extract(archive, target)
        return version, target

    def promote(self, staged: Staged) -> Outcome:
        self._verify(staged.endpoint_name, staged.version, staged.previous_version)
        return Outcome(FinalState.DEPLOYED, staged.version,
                       f"{staged.version} serves at {staged.stable.url} ({self.config.instance_count} x "
                       f"{self.config.instance_type})")

    def discard(self, staged: Staged) -> Outcome:
        previous = staged.previous_version
        if previous:
            outcome = self.rollback(staged.endpoint_name, previous)
            return Outcome(FinalState.ROLLED_BACK, previous, f"{outcome.detail}; {staged.version} discarded")
        self._delete_endpoint(staged.endpoint_name)
        return Outcome(FinalState.REMOVED, None, f"first deployment of {staged.endpoint_name} failed: endpoint deleted")

    def rollback(self, endpoint_name: str, to_version: str) -> Outcome:
        try:
            self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=to_version)
        except ClientError as err:
            if not_found(err):
                raise DeploymentError(f"endpoint config {to_version} no longer exists in {self.aws.region}: cannot "
                                      f"roll back to it; deploy its training job again") from None
            raise self.aws.error(err, f"describe endpoint config {to_version}") from None
        current = self._settle(endpoint_name)
        if current is not None and current["EndpointStatus"] != "InService":
            self._delete_endpoint(endpoint_name)
            current = None
        if current is not None and current.get("EndpointConfigName") == to_version:
            # Already there, e.g. after AWS rolled a failed update back; its FailureReason is that update's.
            log.info("endpoint %s already serves %s%s", endpoint_name, to_version,
                     f" (the last update failed: {current['FailureReason']})" if current.get("FailureReason") else "")
            return Outcome(FinalState.ROLLED_BACK, to_version, f"{to_version} serves at {self.aws.url(endpoint_name)}")
        if current is None:
            log.info("endpoint %s is gone: creating it again with %s", endpoint_name, to_version)
            self.aws.call(self.aws.sagemaker, "create_endpoint", f"create endpoint {endpoint_name}",
                          EndpointName=endpoint_name, EndpointConfigName=to_version)
        else:
            log.info("rolling endpoint %s back from %s to %s", endpoint_name, current.get("EndpointConfigName"),
                     to_version)
            self.aws.call(self.aws.sagemaker, "update_endpoint", f"roll endpoint {endpoint_name} back",
                          EndpointName=endpoint_name, EndpointConfigName=to_version,
                          DeploymentConfig=self._deployment_config(rollback=True))
        description = self._verify(endpoint_name, to_version)
        self._retag(description["EndpointArn"], to_version)
        return Outcome(FinalState.ROLLED_BACK, to_version,
                       f"{to_version} serves again at {self.aws.url(endpoint_name)}")

    def _retag(self, endpoint_arn: str, version: str) -> None:
        """The endpoint's tags describe what it serves: copy them from the version's model."""
        try:
            model_arn = self.aws.sagemaker.describe_model(ModelName=version)["ModelArn"]
            tags = [tag for tag in self.aws.sagemaker.list_tags(ResourceArn=model_arn)["Tags"]
                    if tag["Key"] in (TAG_TRAINING_JOB, TAG_ACCURACY, TAG_RUN_ID)]
            if tags:
                self.aws.sagemaker.add_tags(ResourceArn=endpoint_arn, Tags=tags)
        except (ClientError, BotoCoreError) as err:
            log.warning("could not copy the tags of %s to its endpoint: %s", version,
                        self.aws.error(err, "tag").message)

    # ----------------------------------------------------------------- removal
    def _delete_endpoint(self, name: str) -> None:
        if self.aws.try_delete("delete_endpoint", f"delete endpoint {name}", EndpointName=name):
            log.info("deleting SageMaker endpoint %s", name)
        if self._settle(name) is not None:  # Deleting ends with the endpoint gone
            raise DeploymentError(f"SageMaker endpoint {name!r} was not deleted")

    def remove(self, endpoint_name: str) -> None:
        """Delete the endpoint and every endpoint config and model of its versions (S3 artifacts stay)."""
        names: set[str] = set()
        row = self.store.endpoint(endpoint_name)
        if row and row.get("serving_version"):
            names.add(row["serving_version"])
        for deployment in self.store.deployments(endpoint_name, limit=100_000):
            names.update(filter(None, (deployment["to_version"], deployment["from_version"])))
        description = self._describe_endpoint(endpoint_name)
        if description is not None:
            names.add(description["EndpointConfigName"])
            self._delete_endpoint(endpoint_name)
        deleted = versions.delete(self.aws, names)
        log.info("deleted endpoint %s and %d endpoint config(s) with their models", endpoint_name, len(deleted))

    def remove_by_prefix(self, prefix: str) -> dict[str, list[str]]:
        """Delete endpoints named ``prefix`` or ``prefix-YYYYmmdd-HHMMSS``, then such endpoint configs and models
        that no remaining endpoint uses (by name pattern, whether or not the store recorded them)."""
        pattern = re.compile(rf"^{re.escape(prefix)}(?:{_VERSION_SUFFIX})?$")

        def names(operation: str, key: str, field: str) -> list[str]:
            found = []
            try:
                for page in self.aws.sagemaker.get_paginator(operation).paginate(NameContains=prefix):
                    found += [item[field] for item in page.get(key, [])]
            except (ClientError, BotoCoreError) as err:
                raise self.aws.error(err, f"list SageMaker resources named {prefix}*") from None
            return [name for name in found if pattern.match(name)]

        endpoints = names("list_endpoints", "Endpoints", "EndpointName")
        for endpoint in endpoints:
            self._delete_endpoint(endpoint)
        in_use: set[str] = set()
        try:
            for page in self.aws.sagemaker.get_paginator("list_endpoints").paginate():
                for item in page.get("Endpoints", []):
                    description = self._describe_endpoint(item["EndpointName"])
                    if description:
                        in_use.add(description["EndpointConfigName"])
                        config = self.aws.sagemaker.describe_endpoint_config(
                            EndpointConfigName=description["EndpointConfigName"])
                        in_use |= {variant["ModelName"] for variant in config.get("ProductionVariants", [])}
        except (ClientError, BotoCoreError) as err:
            raise self.aws.error(err, "list the endpoints still in use") from None
        configs = [name for name in names("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName")
                   if name not in in_use]
        for config in configs:
            self.aws.try_delete("delete_endpoint_config", f"delete endpoint config {config}", EndpointConfigName=config)
        models = [name for name in names("list_models", "Models", "ModelName") if name not in in_use]
        for model in models:
            self.aws.try_delete("delete_model", f"delete model {model}", ModelName=model)
        return {"endpoints": endpoints, "endpoint_configs": configs, "models": models}

    def describe(self, endpoint_name: str) -> dict[str, Any]:
        row = self.store.require_endpoint(endpoint_name)
        description = self._describe_endpoint(endpoint_name)
        facts: dict[str, Any] = {"name": endpoint_name, "backend": self.backend_type, "region": self.aws.region,
                                 "url": row["url"] or self.aws.url(endpoint_name)}
        if description is None:
            return {**facts, "exists": False, "healthy": False, "serving_version": None,
                    "recorded_version": row["serving_version"]}
        status = description["EndpointStatus"]
        return {**facts, "exists": True, "status": status, "serving_version": description.get("EndpointConfigName"),
                "recorded_version": row["serving_version"], "failure_reason": description.get("FailureReason"),
                "healthy": status == "InService", "version": description.get("EndpointConfigName")}
