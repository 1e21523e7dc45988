import re

import pytest

from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.uris import CredentialsInURI, redact, refuse_credentials


@pytest.mark.parametrize(
    ("uri", "shown", "hint"),
    [
        ("http://admin:hunter2@tracker:5000", "http://***@tracker:5000", "MLFLOW_TRACKING_PASSWORD"),
        ("https://hunter2@tracker", "https://***@tracker", "MLFLOW_TRACKING_PASSWORD"),
        ("s3://AKIAKEY:hun/ter2+x@bucket/p", "s3://***@bucket/p", "AWS_SECRET_ACCESS_KEY"),
        ("postgresql+psycopg2://mlflow:hunter2@db/mlflow", "postgresql+psycopg2://***@db/mlflow", "PGPASSWORD"),
        ("ray://admin:hunter2@head:10001", "ray://***@head:10001", "environment"),
        ("admin:hunter2@127.0.0.1:6379", "***@127.0.0.1:6379", "environment"),  # a Ray address has no scheme
    ],
)
def test_credentials_are_refused_with_the_uri_masked(uri, shown, hint):
    with pytest.raises(ConfigError, match=rf"^--tracking-uri = '{re.escape(shown)}': a user name or password") as info:
        refuse_credentials(uri, "--tracking-uri")
    assert hint in str(info.value) and "hunter2" not in str(info.value) and "ter2" not in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "uri",
    [None, "", "sqlite:///mlflow.db", "http://tracker:5000/a@b", "s3://bucket/p@v1", "auto", "127.0.0.1:6379",
     "models:/beta-vae@champion", "data/dsprites@v2.npz"],
)
def test_uris_without_credentials_pass(uri):
    refuse_credentials(uri, "--address")


def test_redact_masks_every_uri_and_address_in_a_text():
    text = "'http://a:hunter2@h' then 's3://K:hun/ter2@b/p' and http://h:5000/x@y, (u:hunter2@h:6379) a=b:hunter2@h"
    assert redact(text) == "'http://***@h' then 's3://***@b/p' and http://h:5000/x@y, (***@h:6379) a=***@h"


@pytest.mark.parametrize("error", [ConfigError, EnvironmentProblem, CredentialsInURI])
def test_every_error_of_the_project_keeps_its_message_masked(error):
    # Wherever it is shown: the CLI, a log line, a traceback (which shows repr of its cause).
    exc = error("Ray address 'user:hunter2@head:6379' cannot be joined: ray://u:hunter2@head:10001 refused")
    assert str(exc) == "Ray address '***@head:6379' cannot be joined: ray://***@head:10001 refused"
    assert "hunter2" not in repr(exc) and "hunter2" not in str(exc.args)


def test_an_unreachable_ray_address_is_named_without_its_password():
    from sweeper.run.cluster import check_ray_address

    with pytest.raises(EnvironmentProblem, match=r"Ray address '\*\*\*@127\.0\.0\.1:9' is unreachable") as info:
        check_ray_address("user:hunter2@127.0.0.1:9", timeout_s=2.0)
    assert "hunter2" not in str(info.value)
