"""The one error type of the config edge."""

from __future__ import annotations


class ConfigError(Exception):
    """Invalid stack configuration. Each line names the full config key and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class MissingSecret(str):
    """A problem that is only a secret the stack has not been given yet (`pulumi config set --secret <key>`).

    Stack files carry no secrets (the CLI writes them as ciphertext of the stack's own secrets provider), so the
    offline renders fill these in with placeholders and `make e2e` sets them, and both learn which from here."""

    key: str

    def __new__(cls, key: str, text: str) -> "MissingSecret":
        problem = super().__new__(cls, text)
        problem.key = key
        return problem
