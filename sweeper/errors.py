"""The two kinds of failure a user can fix, and the exit codes the CLI gives them."""


class SweeperError(Exception):
    exit_code = 1


class ConfigError(SweeperError):
    """The config file or an override is wrong: nothing was started."""

    exit_code = 2


class EnvironmentProblem(SweeperError):
    """The config is fine but something it points at is not (Ray cluster, tracking store, sweep folder)."""

    exit_code = 3
