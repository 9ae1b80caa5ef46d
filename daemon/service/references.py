"""Names in models.toml that refer to things above the configuration layer.

`daemon.core.config` checks everything it can know itself; the commands that `[mqtt] commands`
may allow are the assistant's table, and the wake-word models are the capture pipeline's. These
checks join the configuration's own wherever a file is judged as a whole (`tektra validate`,
`tektra doctor`, the start of `tektra run`), so a name that can never work is found at once, not
as a warning in a log or when the microphone first opens.
"""

from __future__ import annotations

from daemon.assistant.commands import COMMANDS
from daemon.core.config.partial import did_you_mean
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import ConfigIssue


def reference_issues(config: TektraConfig) -> list[ConfigIssue]:
    """Every name in `config` that refers to nothing, in the file's order."""
    issues: list[ConfigIssue] = []
    for index, name in enumerate(config.mqtt.commands):
        if name not in COMMANDS:
            known = sorted(COMMANDS)
            hint = did_you_mean(name, known) or f" (commands: {', '.join(known)})"
            message = f"no such command {name!r}{hint}"
            issues.append(ConfigIssue(f"mqtt.commands[{index}]", message))
    wake = config.audio.wake
    if wake.engine == "micro":
        # Imported only here: pymicro-wakeword brings its TFLite runtime.
        from pipelines.wakeword import model_problem

        problem = model_problem(wake.model)
        if problem is not None:
            issues.append(ConfigIssue("audio.wake.model", problem))
    return issues
