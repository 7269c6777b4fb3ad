"""Training jobs on SageMaker, read back into the local job directory every backend produces.

The dataset is written to CSV and uploaded as the ``train`` channel, the
container's files as ``sourcedir.tar.gz``; ``create_training_job`` runs
``train.py`` in the framework image (script mode). When the job is done its
``model.tar.gz`` and ``output.tar.gz`` (``metrics.json`` and the held-out rows)
are downloaded, so the gate, the offline parity check and later deployments work
as they do for a local job.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import DeploymentError
from pipeline.backends.sagemaker import artifacts
from pipeline.backends.sagemaker.errors import shorten
from pipeline.backends.sagemaker.registry import ModelRegistry
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.container import inference
from pipeline.container import train as recipe
from pipeline.container.verified_files import file_sha256
from pipeline.errors import PipelineError
from pipeline.training.fitting import TrainingPipeline
from pipeline.training.jobs import (
    HELDOUT_FILE,
    MODEL_DIR,
    TrainingJob,
    claim_unique_directory,
    job_base_name,
    library_versions,
    record_job,
)

if TYPE_CHECKING:
    from pipeline.state.store import DeploymentStore

log = logging.getLogger(__package__)  # one logger for the whole backend

TRAIN_CHANNEL = "train"
TRAINING_DONE = frozenset({"Completed", "Failed", "Stopped"})


def _sklearn_minor(version: str) -> str:
    return ".".join(version.split("-")[0].split(".")[:2])


class TrainingJobs:
    def __init__(self, aws: AwsSession, store: DeploymentStore, backend_type: str, registry: ModelRegistry) -> None:
        self.registry = registry
        self.aws = aws
        self.config = aws.config
        self.store = store  # where the job directories go
        self.backend_type = backend_type  # recorded in each job's manifest

    def train(self, training: TrainingPipeline) -> TrainingJob:
        # Everything that can be checked here is checked before the first AWS call.
        role = self.aws.role()
        image = self.aws.image_uri()
        dataset = training.load_data()
        # The same input errors as a local run, and the same split the container makes (same rows, same
        # seed): the rows the model will be trained on, hashed for the comparison with a champion.
        X_train, _, y_train, _ = training.split_data(dataset)
        try:
            recipe.build_estimator(self.config.model_type, dict(self.config.hyperparameters), self.config.random_seed)
        except recipe.TrainingInputError as err:
            raise PipelineError(str(err)) from None
        self._warn_about_local_only_overrides(training)
        local_minor, image_minor = _sklearn_minor(library_versions().get("scikit-learn", "")), \
            _sklearn_minor(self.config.sklearn_framework_version)
        if local_minor and local_minor != image_minor:
            log.warning("the model is trained with scikit-learn %s (sklearn_framework_version %s) but checked offline "
                        "with scikit-learn %s here; set sklearn_framework_version to match if the parity check fails",
                        image_minor, self.config.sklearn_framework_version, local_minor)

        bucket = self.aws.bucket()
        source = self.aws.sourcedir()
        base = job_base_name(self.config)
        claimed: list[Path] = []
        try:
            with tempfile.TemporaryDirectory(prefix="mlops-sagemaker-") as scratch:
                data_file = Path(scratch) / "train.csv"
                dataset.frame.to_csv(data_file, index=False)
                for _attempt in range(5):
                    directory = claim_unique_directory(self.store.jobs_dir, base)
                    claimed.append(directory)
                    name = directory.name
                    with open(data_file, "rb") as handle:
                        data_uri = self.aws.put(bucket, f"{name}/input/{TRAIN_CHANNEL}/train.csv", handle)
                    source_uri = self.aws.put(bucket, f"{name}/source/sourcedir.tar.gz", source)
                    if self._create_training_job(name, role, image, bucket, source_uri, dataset.label_column):
                        break
                    log.info("training job name %s is taken in this account; trying the next one", name)
                else:
                    raise PipelineError(f"no free training job name after {base!r}; change model_name_prefix")
                job = self._finish_training(name, directory, training, dataset, image, role, source_uri, data_uri,
                                            X_train, y_train)
        except BaseException:
            for directory in claimed:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        for directory in claimed[:-1]:  # names another account user had taken
            shutil.rmtree(directory, ignore_errors=True)
        return job

    def _warn_about_local_only_overrides(self, training: TrainingPipeline) -> None:
        overridden = [name for name in ("split_data", "train_local_model", "evaluate_model", "run", "save")
                      if getattr(type(training), name) is not getattr(TrainingPipeline, name)]
        if overridden:
            log.warning("%s overrides %s: SageMaker runs pipeline/container/train.py, so these overrides are not "
                        "used there (load_data and custom evaluations are)", type(training).__name__,
                        ", ".join(overridden))

    def _hyperparameters(self, name: str, source_uri: str, label_column: str) -> dict[str, str]:
        values: dict[str, Any] = {
            "model_type": self.config.model_type,
            "hyperparameters": json.dumps(dict(self.config.hyperparameters), sort_keys=True),
            "label_column": label_column,
            "test_size": self.config.test_size,
            "random_seed": self.config.random_seed,
            "cv_folds": self.config.cv_folds,
            "sagemaker_program": artifacts.TRAIN_PROGRAM,
            "sagemaker_submit_directory": source_uri,
            "sagemaker_region": self.aws.region,
            "sagemaker_job_name": name,
            "sagemaker_container_log_level": logging.INFO,
        }
        # As the SageMaker SDK does: every value JSON-encoded. The container's toolkit JSON-decodes each one,
        # so the "hyperparameters" JSON object reaches train.py as one string argument, not as k=v pairs.
        return {key: json.dumps(value) for key, value in values.items()}

    def _create_training_job(self, name: str, role: str, image: str, bucket: str, source_uri: str,
                             label_column: str) -> bool:
        """Create the job; False when the name is already taken in this account and region."""
        params = dict(
            TrainingJobName=name,
            HyperParameters=self._hyperparameters(name, source_uri, label_column),
            AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
            RoleArn=role,
            InputDataConfig=[{
                "ChannelName": TRAIN_CHANNEL,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
                                                "S3Uri": f"s3://{bucket}/{name}/input/{TRAIN_CHANNEL}/"}},
                "ContentType": "text/csv",
                "InputMode": "File",
            }],
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/"},
            ResourceConfig={"InstanceType": self.config.training_instance_type, "InstanceCount": 1,
                            "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": max(60, int(self.config.sagemaker_timeout_minutes * 60))},
            Tags=self.aws.tags(name, None),
        )
        log.info("creating SageMaker training job %s (%s on %s)", name, self.config.model_type,
                 self.config.training_instance_type)
        try:
            self.aws.sagemaker.create_training_job(**params)
        except ClientError as err:
            text = str(err.response.get("Error", {}).get("Message") or "").lower()
            if err.response.get("Error", {}).get("Code") == "ResourceInUse" or "must be unique" in text \
                    or "already exists" in text:
                return False
            raise self.aws.error(err, f"create training job {name}") from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"create training job {name}") from None
        return True

    def _finish_training(self, name: str, directory: Path, training: TrainingPipeline, dataset: Any, image: str,
                         role: str, source_uri: str, data_uri: str, X_train: pd.DataFrame,
                         y_train: pd.Series) -> TrainingJob:
        description = self.aws.wait_for_job(
            f"training job {name}",
            lambda: self.aws.call(self.aws.sagemaker, "describe_training_job", f"describe training job {name}",
                                  TrainingJobName=name),
            lambda d: d["TrainingJobStatus"] in TRAINING_DONE,
            lambda d: f"{d['TrainingJobStatus']} ({d.get('SecondaryStatus', '-')})",
            lambda: self.aws.sagemaker.stop_training_job(TrainingJobName=name))
        status = description["TrainingJobStatus"]
        if status != "Completed":
            reason = shorten(description.get("FailureReason") or "no reason given", 500)
            raise DeploymentError(f"training job {name} {status.lower()}: {reason}",
                                  hint=f"The job's log is in CloudWatch, log group /aws/sagemaker/TrainingJobs, "
                                       f"stream {name}/algo-1-...")
        model_uri = description["ModelArtifacts"]["S3ModelArtifacts"]
        output_uri = model_uri.rsplit("/", 1)[0] + "/output.tar.gz"
        with tempfile.TemporaryDirectory(prefix="mlops-sagemaker-") as scratch:
            model_archive, output_archive = Path(scratch) / "model.tar.gz", Path(scratch) / "output.tar.gz"
            model_etag = self.aws.get(model_uri, model_archive)
            self.aws.get(output_uri, output_archive)
            artifacts.extract(model_archive, directory / MODEL_DIR)
            artifacts.extract(output_archive, Path(scratch) / "output")
            written = Path(scratch) / "output"
            for wanted in (recipe.METRICS_FILENAME, HELDOUT_FILE):
                if not (written / wanted).is_file():
                    raise DeploymentError(f"training job {name} wrote no {wanted} to {output_uri}: the entry point "
                                          f"must write it to SM_OUTPUT_DATA_DIR")
            metrics = json.loads((written / recipe.METRICS_FILENAME).read_text())
            shutil.copyfile(written / HELDOUT_FILE, directory / HELDOUT_FILE)
        model_path = directory / MODEL_DIR / recipe.MODEL_FILENAME
        if not model_path.is_file():
            raise DeploymentError(f"training job {name}: {model_uri} holds no {recipe.MODEL_FILENAME}")
        if training.custom_evaluations:  # evaluated here, on the model SageMaker trained
            import pandas as pd

            model = inference.model_fn(str(directory / MODEL_DIR))  # checked against the hash written beside it
            heldout = pd.read_csv(directory / HELDOUT_FILE)
            features, labels = heldout.drop(columns=[dataset.label_column]), heldout[dataset.label_column]
            for evaluation in training.custom_evaluations:
                metrics.update(evaluation(model, features, labels))
        # In the Model Registry, awaiting a person's approval; the job's manifest keeps its ARN.
        package = self.registry.register(name, file_sha256(model_path), metrics, model_uri, image)
        job = record_job(
            directory, self.config, dataset, metrics, X_train, y_train,
            model_package_arn=package,
            backend=self.backend_type,
            region=self.aws.region,
            role_arn=role,
            training_job_arn=description.get("TrainingJobArn"),
            training_image=image,
            sklearn_framework_version=self.config.sklearn_framework_version,
            training_data_url=data_uri,
            sourcedir_url=source_uri,
            serve_program=artifacts.SERVE_PROGRAM,
            model_data_url=model_uri,
            model_data_etag=model_etag,
            output_data_url=output_uri,
            billable_seconds=description.get("BillableTimeInSeconds"),
        )
        self.aws.call(self.aws.sagemaker, "add_tags", f"tag training job {name}",
                      ResourceArn=description["TrainingJobArn"], Tags=self.aws.tags(name, metrics.get("accuracy")))
        return job
