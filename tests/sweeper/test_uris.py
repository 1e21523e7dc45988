import re

import pytest

from sweeper.errors import ConfigError
from sweeper.uris import redact, refuse_credentials


@pytest.mark.parametrize(
    ("uri", "shown", "hint"),
    [
        ("http://admin:hunter2@tracker:5000", "http://***@tracker:5000", "MLFLOW_TRACKING_PASSWORD"),
        ("https://hunter2@tracker", "https://***@tracker", "MLFLOW_TRACKING_PASSWORD"),
        ("s3://AKIAKEY:hun/ter2+x@bucket/p", "s3://***@bucket/p", "AWS_SECRET_ACCESS_KEY"),
        ("postgresql+psycopg2://mlflow:hunter2@db/mlflow", "postgresql+psycopg2://***@db/mlflow", "PGPASSWORD"),
        ("ray://admin:hunter2@head:10001", "ray://***@head:10001", "environment"),
    ],
)
def test_credentials_are_refused_with_the_uri_masked(uri, shown, hint):
    with pytest.raises(ConfigError, match=rf"^--tracking-uri = '{re.escape(shown)}': a user name or password") as info:
        refuse_credentials(uri, "--tracking-uri")
    assert hint in str(info.value) and "hunter2" not in str(info.value) and "ter2" not in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "uri", [None, "", "sqlite:///mlflow.db", "http://tracker:5000/a@b", "s3://bucket/p@v1", "auto", "127.0.0.1:6379"]
)
def test_uris_without_credentials_pass(uri):
    refuse_credentials(uri, "--address")


def test_redact_masks_every_uri_in_a_text():
    text = "'http://a:hunter2@h' then 's3://K:hun/ter2@b/p' and http://h:5000/x@y"
    assert redact(text) == "'http://***@h' then 's3://***@b/p' and http://h:5000/x@y"
