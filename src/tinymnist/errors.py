"""The exception types for mistakes a user can cause (bad path, corrupt file, bad image, bad setting).

The CLI turns them into a single line on stderr and a non-zero exit; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


def flag_name(setting: str, value: str = "") -> str:
    """How the command line spells a setting, with a value when one is given: --engine eager."""
    flag = "--" + setting.replace("_", "-")
    return f"{flag} {value}" if value else flag


def keyword_name(setting: str, value: str = "") -> str:
    """How the Python API spells a setting: engine=eager, or out= alone."""
    return f"{setting}={value}"


def literal(text: object) -> str:
    """`text` as it should read inside a SettingError template (its braces are not placeholders)."""
    return str(text).replace("{", "{{").replace("}", "}}")


class _Setting:
    """A setting inside a SettingError template: "{engine}" names it, "{engine:eager}" gives a value too."""

    def __init__(self, setting: str, name: Callable[[str, str], str]) -> None:
        self.setting, self.name = setting, name

    def __format__(self, value: str) -> str:
        return self.name(self.setting, value)


class SettingError(UserError):
    """A problem that a setting of the run causes or can fix. The library states it once, with each
    setting as a placeholder in `template` ("lower {lr}", "pass {engine:eager}"); each front door words
    the settings its own way: the CLI as flags (`worded(flag_name)`: "--engine eager"), the Python API as
    keyword arguments (`str(error)`: "engine=eager")."""

    def __init__(self, template: str, *settings: str) -> None:
        self.template = template
        self.settings = settings
        super().__init__(self.worded(keyword_name))

    def worded(self, name: Callable[[str, str], str]) -> str:
        return self.template.format(**{setting: _Setting(setting, name) for setting in self.settings})
