"""User names and passwords in URIs: refused wherever the project accepts a URI, and never echoed.

Every URI the sweeper is given ends up printed, logged, stored in sweep.json,
in the config.yaml artifact and in Tune's state, where anyone who can read
the sweep or its runs could read the secret. So a URI with credentials is
refused, the refusal shows the URI with them masked, and the message says
where the credentials go instead. Kept free of heavy imports: the CLI calls
it before anything else is loaded.
"""

from __future__ import annotations

import re

from sweeper.errors import ConfigError

# `user:password@` after `scheme://`. The second branch catches a password holding '/', as AWS
# secret keys often do ("s3://KEY:abc/def@bucket"), and leaves alone a port followed by a path
# with an '@' in it ("http://host:5000/a@b"). The third catches an address without a scheme, as
# Ray takes them ("user:password@host:6379"): a word that starts the text or follows a space, a
# quote, '=' or '(' and holds a ':' before its '@' (a file name with an '@' is left alone).
_USERINFO = re.compile(
    r"(?<=://)(?:[^/@\s'\"]*|[^/@\s'\":]+:(?!\d*/)[^@\s'\"]*)@"
    r"|(?<![^\s'\"=(])[^/@\s'\"=(:]+:[^/@\s'\"]*@"
)

_HINTS = {  # where the credentials of a URI scheme go instead
    "http": "give them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead",
    "https": "give them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead",
    "s3": "give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS credentials file) instead",
    "gs": "give them in GOOGLE_APPLICATION_CREDENTIALS instead",
    "gcs": "give them in GOOGLE_APPLICATION_CREDENTIALS instead",
    "postgresql": "give the password in PGPASSWORD or ~/.pgpass instead",
}
_DEFAULT_HINT = "give them through the environment or a credentials file instead"


class CredentialsInURI(ConfigError, ValueError):
    """A ConfigError (exit 2) that is also a ValueError, so pydantic validators can raise it too."""


def redact(text: str) -> str:
    """`http://user:secret@host` -> `http://***@host` (and `user:secret@host:6379` -> `***@host:6379`),
    in a URI or address or in any text that quotes one."""
    return _USERINFO.sub("***@", text)


def refuse_credentials(uri: str | None, where: str) -> None:
    """Raise CredentialsInURI if `uri` holds a user name or password; `where` names the key or option."""
    if not uri or not _USERINFO.search(uri):
        return
    scheme = uri.partition("://")[0].lower().split("+")[0]  # postgresql+psycopg2 -> postgresql
    raise CredentialsInURI(
        f"{where} = {redact(uri)!r}: a user name or password in the URI (not shown); "
        f"{_HINTS.get(scheme, _DEFAULT_HINT)}"
    )
