"""SageMaker endpoints: a stable name, switched between versions by blue/green updates.

The endpoint keeps its name: ``create_endpoint`` the first time, afterwards
``update_endpoint`` with a blue/green ``DeploymentConfig``. After ``InService``
the endpoint must run the intended config and carry no ``FailureReason``: an
update that AWS rolled back is a failed deployment. ``discard`` updates back to
the previous config, or deletes a first endpoint.

Traffic routing: ALL_AT_ONCE, CANARY and LINEAR are SageMaker's own blue/green
``TrafficRoutingConfiguration``: SageMaker shifts the traffic step by step inside
``update_endpoint`` and rolls back by itself when one of ``rollback_alarm_names`` fires, so the
pipeline bakes nothing on the endpoint. SHADOW is baked by the pipeline: ``stage`` puts the
candidate beside the serving version (a "trial" config), ``split_traffic`` attaches it as a shadow
variant, ``traffic_since`` reads the bake (``traffic``), and ``promote`` or ``discard`` leaves one
version serving alone.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import DeploymentError, IntervalTraffic, Outcome, Server, Staged, TrafficStep
from pipeline.backends.sagemaker import artifacts, recovery, traffic, versions
from pipeline.backends.sagemaker.client import TRANSITIONAL, SageMakerEndpointClient
from pipeline.backends.sagemaker.errors import WaitTimeout, not_found, shorten
from pipeline.backends.sagemaker.session import (
    TAG_ACCURACY,
    TAG_RUN_ID,
    TAG_TRAINING_JOB,
    AwsSession,
)
from pipeline.errors import PipelineError
from pipeline.outcomes import FinalState
from pipeline.training.jobs import TrainingJob

if TYPE_CHECKING:
    from pipeline.state.store import DeploymentStore

log = logging.getLogger(__package__)  # one logger for the whole backend

MAX_WAIT_SECONDS = 3600  # TrafficRoutingConfig.WaitIntervalInSeconds and TerminationWaitInSeconds allow at most this
# WaitIntervalInSeconds is a whole number of seconds, 0 to 3600 (SageMaker API reference, TrafficRoutingConfig).
MIN_WAIT_SECONDS = 0
_VERSION_SUFFIX = r"-\d{8}-\d{6}(?:-\d+)?"
_DERIVED_SUFFIX = "(?:" + "|".join(f"-{role}" for role in versions.DERIVED_ROLES) + ")?"


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
        """Blue/green. ALL_AT_ONCE (and SHADOW's promotion, its bake done): everything at once, then
        ``baking_period_minutes`` watched. CANARY: ``canary_percent`` of the capacity for one interval of
        ``baking_seconds``, then the rest; LINEAR: ``linear_step_percent`` more each interval; either keeps the
        old fleet ``baking_period_minutes`` after the last shift. A rollback goes at once."""
        if rollback:  # no alarms: the alarms that fired may still be firing and would undo the rollback
            return self._at_once()
        routing_type = self.config.traffic_routing
        if routing_type in ("CANARY", "LINEAR"):
            routing: dict[str, Any] = {"Type": routing_type, "WaitIntervalInSeconds": self._wait_interval()}
            if routing_type == "CANARY":
                routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": self.config.canary_percent}
            else:
                routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": self.config.linear_step_percent}
            termination = int(self.config.baking_period_minutes * 60)
        else:
            routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": int(self.config.baking_period_minutes * 60)}
            termination = 0
        deployment: dict[str, Any] = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing,
                                                                "TerminationWaitInSeconds": termination}}
        if self.config.rollback_alarm_names:
            deployment["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": alarm} for alarm in self.config.rollback_alarm_names]}
        return deployment

    @staticmethod
    def _at_once() -> dict[str, Any]:
        """Everything at once, nothing watched: rollbacks, and the SHADOW steps that give a candidate no client."""
        return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE",
                                                                          "WaitIntervalInSeconds": 0},
                                          "TerminationWaitInSeconds": 0}}

    def _wait_interval(self) -> int:
        """``baking_seconds`` as SageMaker's ``WaitIntervalInSeconds``: whole seconds from 0 to 3600, so a
        fraction is rounded up (never a shorter bake than asked), and said."""
        asked = self.config.baking_seconds
        seconds = min(MAX_WAIT_SECONDS, max(MIN_WAIT_SECONDS, math.ceil(asked)))
        if seconds != asked:
            log.warning("baking_seconds=%g rounded up to %d: SageMaker's WaitIntervalInSeconds takes whole seconds "
                        "(%d to %d)", asked, seconds, MIN_WAIT_SECONDS, MAX_WAIT_SECONDS)
        return seconds

    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        current = self._settle(endpoint_name)  # an update still running would refuse ours
        if current is not None and current["EndpointStatus"] != "InService":
            # Failed (or stuck) endpoints cannot be updated; a new one takes its place.
            log.warning("endpoint %s is %s (%s): deleting it to create it again", endpoint_name,
                        current["EndpointStatus"], current.get("FailureReason") or "no reason given")
            self._delete_endpoint(endpoint_name)
            current = None
        previous = self._serving_version(current["EndpointConfigName"]) if current else None
        tags = self.aws.tags(job.name, job.metrics.get("accuracy"))
        versions.create(self.aws, version, job, tags)
        url = self.aws.url(endpoint_name)
        if current is not None and previous is not None and self.config.traffic_routing == "SHADOW":
            return self._stage_beside(endpoint_name, version, previous, url, tags)
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

    def _stage_beside(self, endpoint_name: str, version: str, previous: str, url: str,
                      tags: list[dict[str, str]]) -> Staged:
        """SHADOW: the endpoint tests must reach the candidate while the serving version answers every client.
        A shadow variant cannot be that: its answers are never returned, and ``TargetVariant`` names a production
        variant. So the candidate first joins as a second production variant of weight 0: SageMaker routes the
        clients by weight (all to ``previous``) and the tests' requests name the candidate in ``TargetVariant``.
        ``split_traffic`` then moves it to the shadow variant for the bake."""
        trial = versions.create_trial(self.aws, version, previous, tags)
        log.info("updating SageMaker endpoint %s to %s: %s keeps every client, %s beside it for the endpoint tests",
                 endpoint_name, trial, previous, version)
        self._update(endpoint_name, trial, self._at_once(), previous)
        resources = {"endpoint_config": trial, "region": self.aws.region}
        return Staged(endpoint_name, version, previous, Server(url, resources={**resources, "target_variant": version}),
                      Server(url, resources={"endpoint_config": previous, "region": self.aws.region}),
                      beside_stable=True)

    def _update(self, endpoint_name: str, config_name: str, deployment: dict[str, Any],
                previous: str) -> dict[str, Any]:
        """``update_endpoint`` to ``config_name``, waited for and verified; a failure puts ``previous`` back."""
        self.aws.call(self.aws.sagemaker, "update_endpoint", f"update endpoint {endpoint_name}",
                      EndpointName=endpoint_name, EndpointConfigName=config_name, DeploymentConfig=deployment)
        try:
            return self._verify(endpoint_name, config_name, previous)
        except WaitTimeout as failure:  # still changing: nothing can be undone before it ends
            raise WaitTimeout(f"{failure.message}; the endpoint is still changing: check it in the SageMaker console "
                              f"and run again (or roll back) once it is InService") from None
        except DeploymentError as failure:
            raise DeploymentError(failure.message + self._undo_stage(endpoint_name, previous)) from None

    def _serving_version(self, config_name: str) -> str:
        """The version that answers the clients of an endpoint on ``config_name``: the config's own for a version's
        config; for a trial or shadow config, its production variant of weight above 0 (named after its version)."""
        if not versions.is_derived(config_name):
            return config_name
        try:
            config = self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        except ClientError as err:
            if not_found(err):
                return config_name
            raise self.aws.error(err, f"describe endpoint config {config_name}") from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"describe endpoint config {config_name}") from None
        weighted = [variant for variant in config.get("ProductionVariants", [])
                    if float(variant.get("InitialVariantWeight", 1.0)) > 0]
        return weighted[0]["VariantName"] if weighted else config_name

    def _shadow_of(self, description: dict[str, Any]) -> str | None:
        """The shadow variant attached to the endpoint (named after its version), if any."""
        shadows = description.get("ShadowProductionVariants") or []
        return shadows[0]["VariantName"] if shadows else None

    # ----------------------------------------------------------------- SHADOW bakes
    def split_traffic(self, staged: Staged, step: TrafficStep) -> None:
        """Attach the candidate as the serving version's shadow: every live request is answered by the serving
        version and a copy (``step.percent``) predicted by the candidate, its answer captured, never returned."""
        if step.mode != "shadow":
            raise DeploymentError(f"SageMaker splits traffic ({self.config.traffic_routing}) inside its blue/green "
                                  f"update_endpoint; the pipeline only bakes SHADOW on it")
        if not staged.beside_stable or not staged.previous_version:
            raise DeploymentError(f"{staged.version} is the first version of {staged.endpoint_name}: no serving "
                                  f"version to shadow")
        if not 1 <= step.percent <= 100:
            raise DeploymentError(f"a shadow copies 1 to 100% of the requests, not {step.percent}")
        tags = self._model_tags(staged.version)
        shadow = versions.create_shadow(self.aws, staged.version, staged.previous_version, step.percent, tags)
        log.info("updating SageMaker endpoint %s to %s: %s answers every client, %s predicts a copy of %d%% of them",
                 staged.endpoint_name, shadow, staged.previous_version, staged.version, step.percent)
        if self.config.baking_seconds < traffic.USEFUL_BAKE_SECONDS:
            log.warning("baking_seconds=%g: a SHADOW bake on SageMaker reads whole CloudWatch minutes after it starts "
                        "(and CloudWatch publishes a minute late); at least %d seconds lets it see traffic",
                        self.config.baking_seconds, traffic.USEFUL_BAKE_SECONDS)
        description = self._update(staged.endpoint_name, shadow, self._at_once(), staged.previous_version)
        attached = self._shadow_of(description)
        if attached is not None and attached != staged.version:
            raise DeploymentError(f"SageMaker endpoint {staged.endpoint_name!r} shadows {attached}, not "
                                  f"{staged.version}")

    def reconcile(self, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
        """After a pipeline stopped mid-deployment: what AWS serves is recorded, or made safe (``recovery``)."""
        return recovery.reconcile(self, endpoint_name, deployment)

    def traffic_mark(self, staged: Staged) -> traffic.TrafficMark:
        return traffic.TrafficMark(traffic.now())

    def traffic_since(self, staged: Staged, mark: Any) -> IntervalTraffic:
        if not isinstance(mark, traffic.TrafficMark) or not staged.previous_version:
            raise DeploymentError("traffic_since needs a mark from traffic_mark of a staged SHADOW candidate")
        return traffic.ShadowTraffic(self.aws, staged.endpoint_name, staged.previous_version,
                                     staged.version).since(mark)

    def _model_tags(self, version: str) -> list[dict[str, str]]:
        """What the version's model was tagged with at ``stage``: the configs made later carry the same."""
        try:
            arn = self.aws.sagemaker.describe_model(ModelName=version)["ModelArn"]
            return [tag for tag in self.aws.sagemaker.list_tags(ResourceArn=arn)["Tags"]
                    if tag["Key"] in (TAG_TRAINING_JOB, TAG_ACCURACY, TAG_RUN_ID)]
        except (ClientError, BotoCoreError) as err:
            raise self.aws.error(err, f"read the tags of model {version}") from None

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
        return SageMakerEndpointClient(self.aws, name, server.url, server.resources.get("target_variant"))

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
        version = self._serving_version(description["EndpointConfigName"])  # a bake's config: its serving version
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
        """Blue/green: the update was the switch, verify it. A candidate beside the serving version (SHADOW):
        update to its own config, where it is the only production variant, as the configured blue/green update
        (alarms and ``baking_period_minutes`` watched)."""
        stable = None
        if staged.beside_stable:
            log.info("updating SageMaker endpoint %s to %s alone", staged.endpoint_name, staged.version)
            self.aws.call(self.aws.sagemaker, "update_endpoint", f"update endpoint {staged.endpoint_name}",
                          EndpointName=staged.endpoint_name, EndpointConfigName=staged.version,
                          DeploymentConfig=self._deployment_config())
            description = self._verify(staged.endpoint_name, staged.version, staged.previous_version)
            self._retag(description["EndpointArn"], staged.version)
            versions.delete_derived(self.aws, staged.version)
            stable = Server(staged.stable.url, resources={"endpoint_config": staged.version, "region": self.aws.region})
        else:
            description = self._verify(staged.endpoint_name, staged.version, staged.previous_version)
        recovery.mark_verified(self, description["EndpointArn"], staged.version)
        return Outcome(FinalState.DEPLOYED, staged.version,
                       f"{staged.version} serves at {staged.stable.url} ({self.config.instance_count} x "
                       f"{self.config.instance_type})", stable)

    def discard(self, staged: Staged) -> Outcome:
        previous = staged.previous_version
        if previous:
            outcome = self.rollback(staged.endpoint_name, previous)
            if staged.beside_stable:  # the candidate's trial and shadow configs served their purpose
                versions.delete_derived(self.aws, staged.version)
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
        recovery.mark_verified(self, description["EndpointArn"], to_version)
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
        pattern = re.compile(rf"^{re.escape(prefix)}(?:{_VERSION_SUFFIX}{_DERIVED_SUFFIX})?$")

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
                        in_use |= {variant["ModelName"] for variant in (config.get("ProductionVariants", []) +
                                                                        config.get("ShadowProductionVariants", []))}
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
        config_name = description.get("EndpointConfigName")
        serving = self._serving_version(config_name) if config_name else None
        found = {**facts, "exists": True, "status": status, "serving_version": serving,
                 "recorded_version": row["serving_version"], "failure_reason": description.get("FailureReason"),
                 "healthy": status == "InService", "version": serving}
        if config_name != serving:  # a candidate beside the serving version (SHADOW)
            found["endpoint_config"] = config_name
        shadow = self._shadow_of(description)
        if shadow:
            found["shadow_version"] = shadow
        return found
