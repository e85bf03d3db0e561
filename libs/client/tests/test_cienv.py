"""CI metadata picked up from each provider's environment variables."""

from __future__ import annotations

from flakehouse.client.cienv import ci_labels


def test_outside_ci_there_are_no_labels() -> None:
    assert ci_labels({"PATH": "/bin", "GITHUB_SHA": "abc"}) == {}


def test_github_pull_request_uses_the_head_branch() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_HEAD_REF": "feature/x",
        "GITHUB_REF_NAME": "42/merge",
        "GITHUB_SHA": "0123abc",
        "GITHUB_JOB": "test",
        "GITHUB_RUN_ID": "987",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_WORKFLOW": "CI",
    }
    assert ci_labels(env) == {
        "ci": "github",
        "branch": "feature/x",
        "commit": "0123abc",
        "job": "test",
        "build": "987",
        "repository": "acme/shop",
        "pipeline": "CI",
    }


def test_github_push_falls_back_to_the_ref_name_when_head_ref_is_empty() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": "main"}
    assert ci_labels(env)["branch"] == "main"


def test_gitlab() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_COMMIT_REF_NAME": "main",
        "CI_COMMIT_SHA": "ff00",
        "CI_JOB_NAME": "unit",
        "CI_JOB_ID": "55",
        "CI_PROJECT_PATH": "acme/shop",
        "CI_PIPELINE_ID": "7",
    }
    assert ci_labels(env) == {
        "ci": "gitlab",
        "branch": "main",
        "commit": "ff00",
        "job": "unit",
        "build": "55",
        "repository": "acme/shop",
        "pipeline": "7",
    }


def test_jenkins_strips_the_remote_from_git_branch() -> None:
    env = {
        "JENKINS_URL": "https://ci",
        "GIT_BRANCH": "origin/release",
        "GIT_COMMIT": "aa",
        "JOB_NAME": "shop/unit",
        "BUILD_NUMBER": "12",
    }
    assert ci_labels(env) == {
        "ci": "jenkins",
        "branch": "release",
        "commit": "aa",
        "job": "shop/unit",
        "build": "12",
    }


def test_buildkite() -> None:
    env = {
        "BUILDKITE": "true",
        "BUILDKITE_BRANCH": "main",
        "BUILDKITE_COMMIT": "c0",
        "BUILDKITE_LABEL": ":pytest: unit",
        "BUILDKITE_BUILD_NUMBER": "3",
        "BUILDKITE_PIPELINE_SLUG": "shop",
    }
    assert ci_labels(env) == {
        "ci": "buildkite",
        "branch": "main",
        "commit": "c0",
        "job": ":pytest: unit",
        "build": "3",
        "pipeline": "shop",
    }
