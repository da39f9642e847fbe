"""A test double for the deploy runner and its hosts, for the unit tests of steps that run commands on hosts
(removal, upgrade): it records each (host, command) and answers from a script instead of running anything."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubefab.playbooks.remote import Output


@dataclass
class ScriptedRunner:
    """Answers a command with the first script entry whose needle it contains (a string is a successful
    command's stdout, an Output is returned as it is), else with an empty success."""

    cluster: object
    answers: dict[str, str | Output]
    ran: list[tuple[str, str]] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # by host name, as the runner's preflight leaves them

    def run(self, host, step: str, command: str, check: bool = True, timeout: int | None = None) -> Output:
        self.ran.append((host.name, command))
        for needle, answer in self.answers.items():
            if needle in command:
                return answer if isinstance(answer, Output) else Output(answer, "", 0)
        return Output("", "", 0)
