"""A version on SageMaker: a model and an endpoint config, both named after it.

The model is served by the image that trained it (the same scikit-learn
unpickles it), running ``serve.py`` from the job's ``sourcedir.tar.gz``; a job
trained on this machine is uploaded first.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from botocore.exceptions import ClientError

from pipeline.backends.base import DeploymentError
from pipeline.backends.sagemaker import artifacts
from pipeline.backends.sagemaker.errors import not_found
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.container.model_files import INPUT_SCHEMA_FILENAME, MODEL_FILENAME, MODEL_SHA256_ENV
from pipeline.errors import PipelineError
from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__package__)  # one logger for the whole backend
# Where SageMaker writes captured requests: the SageMaker SDK's default, under the pipeline's bucket. The files
# land in <this>/<endpoint>/<variant>/yyyy/mm/dd/hh/, and a variant is named after its version, so the layout
# below the endpoint is the local endpoint's capture directory's (pipeline/monitoring/capture.py).
CAPTURE_PREFIX = "model-monitor/data-capture"


def data_capture_config(aws: AwsSession) -> dict[str, object]:
    """Capture ``capture_percent`` of the requests, input and output, CSV and JSON kept as text."""
    percent = aws.config.capture_percent
    return {"EnableCapture": percent > 0, "InitialSamplingPercentage": percent,
            "DestinationS3Uri": f"s3://{aws.bucket()}/{CAPTURE_PREFIX}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}}


def model_artifacts(aws: AwsSession, job: TrainingJob) -> tuple[str, str]:
    """The S3 model data and sourcedir of a job; a job trained on this machine is uploaded first."""
    manifest = job.manifest
    if manifest.get("region") and manifest["region"] != aws.region:
        raise PipelineError(f"training job {job.name} was trained in {manifest['region']}, and SageMaker serves "
                            f"models from S3 in its own region: deploy it with --region {manifest['region']}, "
                            f"or train again in {aws.region}")
    if manifest.get("model_data_url") and manifest.get("sourcedir_url"):
        expected = manifest.get("model_data_etag")
        bucket, key = artifacts.split_s3_uri(manifest["model_data_url"])
        try:
            head = aws.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if not_found(err):
                raise DeploymentError(f"model data {manifest['model_data_url']} of training job {job.name} is "
                                      f"gone from S3; train again") from None
            raise aws.error(err, f"read {manifest['model_data_url']}", "s3") from None
        if expected and head.get("ETag") != expected:
            raise DeploymentError(f"model data {manifest['model_data_url']} changed since training job {job.name} "
                                  f"wrote it (ETag {head.get('ETag')}, expected {expected}): refusing to deploy it")
        if manifest.get("serve_program") == artifacts.SERVE_PROGRAM:
            return manifest["model_data_url"], manifest["sourcedir_url"]
        # Trained before serve.py existed: its sourcedir lacks the serving program; serve with today's files.
        log.info("training job %s was trained without %s: serving it with the current serving code", job.name,
                 artifacts.SERVE_PROGRAM)
        source_uri = aws.put(aws.bucket(), f"{job.name}/source/serving/sourcedir.tar.gz", aws.sourcedir())
        return manifest["model_data_url"], source_uri
    bucket = aws.bucket()
    model_file = job.model_path
    log.info("uploading the model of local training job %s to S3", job.name)
    members = [(MODEL_FILENAME, model_file.read_bytes())]
    schema_file = job.model_dir / INPUT_SCHEMA_FILENAME  # verified with the job's other files
    if schema_file.is_file():
        members.append((INPUT_SCHEMA_FILENAME, schema_file.read_bytes()))
    model_uri = aws.put(bucket, f"{job.name}/output/model.tar.gz", artifacts.tar_gz(members))
    source_uri = aws.put(bucket, f"{job.name}/source/sourcedir.tar.gz", aws.sourcedir())
    return model_uri, source_uri


# Endpoint configs made for a candidate beside the serving version, named after the candidate (SHADOW routing):
# "trial" serves the serving version to every client and holds the candidate as a production variant of weight 0,
# which only a request naming it in TargetVariant reaches (the endpoint tests); "shadow" holds the candidate as a
# shadow variant that predicts a copy of the live requests. Their models are the versions' own: deleting one of
# these configs deletes no model.
DERIVED_ROLES = ("trial", "shadow")
MAX_NAME = 63  # SageMaker's limit on an endpoint config's name


def derived_name(version: str, role: str) -> str:
    """``<version>-<role>``; a version whose name leaves no room for the role is refused, never cut short."""
    name = f"{version}-{role}"
    if len(name) > MAX_NAME:
        raise PipelineError(f"endpoint config name {name!r} is longer than SageMaker's {MAX_NAME} characters: use a "
                            f"shorter endpoint name for traffic_routing=SHADOW")
    return name


def is_derived(config_name: str) -> bool:
    return any(config_name.endswith(f"-{role}") for role in DERIVED_ROLES)


def _variant(aws: AwsSession, version: str, weight: float) -> dict[str, object]:
    """A version's variant, as ``create`` makes it for its own config: named after it, its model."""
    return {"VariantName": version, "ModelName": version, "InitialInstanceCount": aws.config.instance_count,
            "InstanceType": aws.config.instance_type, "InitialVariantWeight": weight}


def create_trial(aws: AwsSession, version: str, serving: str, tags: list[dict[str, str]]) -> str:
    """The config the endpoint tests reach ``version`` through while ``serving`` answers every client: both
    production variants, the candidate's weight 0 (SageMaker routes by weight, and ``TargetVariant`` overrides it)."""
    name = derived_name(version, "trial")
    aws.call(aws.sagemaker, "create_endpoint_config", f"create endpoint config {name}", EndpointConfigName=name,
             Tags=tags, DataCaptureConfig=data_capture_config(aws),
             ProductionVariants=[_variant(aws, serving, 1.0), _variant(aws, version, 0.0)])
    return name


def create_shadow(aws: AwsSession, version: str, serving: str, percent: int, tags: list[dict[str, str]]) -> str:
    """``serving`` the only production variant (SageMaker allows one beside a shadow), ``version`` its shadow.
    SageMaker's own example gives the shadow the production variant's weight, 1.0, and every request is copied;
    ``percent`` below 100 lowers it (guides describe the copied share as the ratio of the two weights, SageMaker's
    API reference does not say). The endpoint's ``DataCaptureConfig`` captures both variants, each under its own
    name."""
    name = derived_name(version, "shadow")
    aws.call(aws.sagemaker, "create_endpoint_config", f"create endpoint config {name}", EndpointConfigName=name,
             Tags=tags, DataCaptureConfig=data_capture_config(aws),
             ProductionVariants=[_variant(aws, serving, 1.0)],
             ShadowProductionVariants=[_variant(aws, version, percent / 100)])
    return name


def delete_derived(aws: AwsSession, version: str) -> list[str]:
    """The trial and shadow configs of ``version`` (their models are the versions' own and stay)."""
    deleted = []
    for role in DERIVED_ROLES:
        name = f"{version}-{role}"
        if len(name) <= MAX_NAME and aws.try_delete("delete_endpoint_config", f"delete endpoint config {name}",
                                                    EndpointConfigName=name):
            deleted.append(name)
    return deleted


def create(aws: AwsSession, version: str, job: TrainingJob, tags: list[dict[str, str]]) -> None:
    """A model and an endpoint config, both named ``version``."""
    role = aws.role(job)
    model_uri, source_uri = model_artifacts(aws, job)
    # A model is served by the image that trained it: the same scikit-learn unpickles it.
    image = job.manifest.get("training_image") or aws.image_uri()
    trained_with = job.manifest.get("sklearn_framework_version")
    if trained_with and trained_with != aws.config.sklearn_framework_version:
        log.info("serving %s with the scikit-learn %s image it was trained with (sklearn_framework_version is %s)",
                 job.name, trained_with, aws.config.sklearn_framework_version)
    aws.call(aws.sagemaker, "create_model", f"create model {version}", ModelName=version,
             ExecutionRoleArn=role, Tags=tags,
             PrimaryContainer={"Image": image, "ModelDataUrl": model_uri, "Environment": {
                 "SAGEMAKER_PROGRAM": artifacts.SERVE_PROGRAM, "SAGEMAKER_SUBMIT_DIRECTORY": source_uri,
                 "SAGEMAKER_REGION": aws.region, "SAGEMAKER_CONTAINER_LOG_LEVEL": str(logging.INFO),
                 # The container's model_fn refuses a model.joblib whose bytes differ from training's.
                 MODEL_SHA256_ENV: job.model_sha256}})
    aws.call(aws.sagemaker, "create_endpoint_config", f"create endpoint config {version}",
             EndpointConfigName=version, Tags=tags, DataCaptureConfig=data_capture_config(aws),
             ProductionVariants=[{"VariantName": version, "ModelName": version,
                                  "InitialInstanceCount": aws.config.instance_count,
                                  "InstanceType": aws.config.instance_type, "InitialVariantWeight": 1.0}])


def delete(aws: AwsSession, names: Iterable[str]) -> list[str]:
    """Delete endpoint configs and their models (a version's trial and shadow configs with it); names that do
    not exist are skipped."""
    deleted = []
    for name in sorted(set(names)):
        if is_derived(name):  # its models are versions' own, deleted with their configs
            if aws.try_delete("delete_endpoint_config", f"delete endpoint config {name}", EndpointConfigName=name):
                deleted.append(name)
            continue
        deleted += delete_derived(aws, name)
        models = {name}
        try:
            config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=name)
            models |= {variant["ModelName"] for variant in config.get("ProductionVariants", [])}
        except ClientError as err:
            if not not_found(err):
                raise aws.error(err, f"describe endpoint config {name}") from None
        if aws.try_delete("delete_endpoint_config", f"delete endpoint config {name}", EndpointConfigName=name):
            deleted.append(name)
        for model in sorted(models):
            aws.try_delete("delete_model", f"delete model {model}", ModelName=model)
    return deleted
