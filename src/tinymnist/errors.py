"""The exception types for mistakes a user can cause (bad path, corrupt file, bad image, bad setting).

The CLI turns them into a single line on stderr and a non-zero exit; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


def flag_name(setting: str) -> str:
    """How the command line spells a setting: --batch-size."""
    return "--" + setting.replace("_", "-")


def keyword_name(setting: str) -> str:
    """How the Python API spells a setting: batch_size=."""
    return f"{setting}="


class SettingError(UserError):
    """A problem that a setting of the run causes or can fix. The library states it once, with each
    setting as a {placeholder} in `template`; each front door words the settings its own way: the CLI
    as flags (`worded(flag_name)`), the Python API as keyword arguments (`str(error)`)."""

    def __init__(self, template: str, *settings: str) -> None:
        self.template = template
        self.settings = settings
        super().__init__(self.worded(keyword_name))

    def worded(self, name: Callable[[str], str]) -> str:
        return self.template.format(**{setting: name(setting) for setting in self.settings})
