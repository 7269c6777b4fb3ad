"""examples/gitlab-ci.yml with MLOPS_STORE_URL set: the jobs share one PostgreSQL store and the SageMaker backend's
bucket, and each runs in a fresh checkout that receives nothing from the jobs before it but their dotenv variables
-- the way a manual deploy job runs in a later pipeline, with no ``.mlops`` to pass along. AWS is moto with the
container emulated, reached through ``AWS_ENDPOINT_URL``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from pipeline.state.store import DeploymentStore
from tests.aws_fixtures import BUCKET, FAKE_AWS_ENV, ROLE
from tests.conftest import run_script
from tests.test_ci_reports import EXAMPLE, _expand, _jobs, _when, copy_project, gitlab_dotenv


def test_gitlab_example_jobs_share_the_store_instead_of_passing_mlops_along(workdir, postgres_url, moto_server):
    aws_url, _ = moto_server
    config = yaml.safe_load(EXAMPLE.read_text())
    push = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
    runner = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "CI": "true",
              "GITLAB_CI": "true", "ROLE_ARN": ROLE, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
              **FAKE_AWS_ENV, "AWS_ENDPOINT_URL": aws_url, "MLOPS_STORE_URL": postgres_url, **push}
    dotenvs: dict[str, dict[str, str]] = {}
    for name, job in [(name, job) for name, job in _jobs(config) if _when(job, push)]:
        project = copy_project(workdir / name)  # a fresh runner: no artifacts of earlier jobs
        env = {**runner, "CI_PROJECT_DIR": str(project), "CI_JOB_NAME": name, "CI_JOB_STAGE": job["stage"]}
        env.update({key: _expand(str(value), env) for key, value in config.get("variables", {}).items()})
        for earlier in dotenvs.values():
            env.update(earlier)  # the dotenv reports alone travel between jobs
        lines = [*job.get("before_script", config.get("default", {}).get("before_script", [])), *job["script"]]
        result = run_script("bash", "-c", "set -eo pipefail\n" + "\n".join(lines), cwd=project, env=env)
        assert result.returncode == 0, f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert not (project / ".mlops").exists()  # nothing a later job would need to be handed
        dotenvs[name] = gitlab_dotenv((project / job["artifacts"]["reports"]["dotenv"]).read_bytes())

    trained = dotenvs["train"]["MLOPS_TRAINING_JOB"]
    assert dotenvs["deploy_production"]["MLOPS_DEPLOYMENT_STATE"] == "deployed"
    assert dotenvs["test_production"]["MLOPS_TESTING_PASSED"] == "true"
    store = DeploymentStore(workdir / "reader", postgres_url)
    assert store.training_job(trained)["directory"] == f"s3://{BUCKET}/mlops-pipeline/jobs/{trained}"
    assert [row["status"] for row in store.runs()] == ["success", "success", "success"]
