"""The two kinds of failure a user can fix, and the exit codes the CLI gives them."""


class SweeperError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        """The message is kept with any URI or address in it masked (`sweeper.uris.redact`), so wherever it
        is shown (the CLI, a log, a traceback), one that quotes a Ray address or a store's URI, or a
        library's words about one, shows no password."""
        from sweeper.uris import redact  # sweeper.uris imports this module

        super().__init__(redact(message))


class ConfigError(SweeperError):
    """The config file or an override is wrong: nothing was started."""

    exit_code = 2


class EnvironmentProblem(SweeperError):
    """The config is fine but something it points at is not (Ray cluster, tracking store, sweep folder)."""

    exit_code = 3
