"""CI metadata as upload labels (`flakehouse ingest --ci-env`), from the environment variables
that GitHub Actions, GitLab CI, Jenkins and Buildkite set for every job.

Each provider maps to the same label names: ci, branch, commit, job, build, repository, and
pipeline where the provider has one. A variable that is unset or empty gives no label."""

from __future__ import annotations

from collections.abc import Mapping

# provider -> (variable that says we run there, {label: variables to try, first set wins})
PROVIDERS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "github": (
        "GITHUB_ACTIONS",
        {
            # On pull requests GITHUB_REF_NAME is "123/merge"; the head branch is the real one.
            "branch": ("GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
            "commit": ("GITHUB_SHA",),
            "job": ("GITHUB_JOB",),
            "build": ("GITHUB_RUN_ID",),
            "repository": ("GITHUB_REPOSITORY",),
            "pipeline": ("GITHUB_WORKFLOW",),
        },
    ),
    "gitlab": (
        "GITLAB_CI",
        {
            "branch": (
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
                "CI_COMMIT_BRANCH",
                "CI_COMMIT_REF_NAME",
            ),
            "commit": ("CI_COMMIT_SHA",),
            "job": ("CI_JOB_NAME",),
            "build": ("CI_JOB_ID",),
            "repository": ("CI_PROJECT_PATH",),
            "pipeline": ("CI_PIPELINE_ID",),
        },
    ),
    "buildkite": (
        "BUILDKITE",
        {
            "branch": ("BUILDKITE_BRANCH",),
            "commit": ("BUILDKITE_COMMIT",),
            "job": ("BUILDKITE_LABEL", "BUILDKITE_STEP_KEY"),
            "build": ("BUILDKITE_BUILD_NUMBER",),
            "repository": ("BUILDKITE_REPO",),
            "pipeline": ("BUILDKITE_PIPELINE_SLUG",),
        },
    ),
    "jenkins": (
        "JENKINS_URL",
        {
            "branch": ("CHANGE_BRANCH", "BRANCH_NAME", "GIT_BRANCH"),
            "commit": ("GIT_COMMIT",),
            "job": ("JOB_NAME",),
            "build": ("BUILD_NUMBER",),
            "repository": ("GIT_URL",),
        },
    ),
}


def ci_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """Labels for the CI provider this runs under, or {} outside CI."""
    for provider, (marker, labels) in PROVIDERS.items():
        if not environ.get(marker):
            continue
        found = {"ci": provider}
        for label, names in labels.items():
            value = next((environ[n] for n in names if environ.get(n)), None)
            if value is not None:
                found[label] = _clean(label, value)
        return found
    return {}


def _clean(label: str, value: str) -> str:
    # Jenkins' GIT_BRANCH is "origin/main" for a plain checkout.
    if label == "branch" and value.startswith("origin/"):
        return value[len("origin/") :]
    return value
