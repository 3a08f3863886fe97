"""The one error type of the config edge."""

from __future__ import annotations


class ConfigError(Exception):
    """Invalid stack configuration. Each line names the full config key and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
