"""An operation, declared once: its arguments, its core call and its result.

Every surface is derived from an :class:`Operation`: the ``d365sync`` subcommand and the
``%d365sync`` subcommand get their argparse options from :meth:`Operation.add_arguments`, the
Python function its signature and docstring from :meth:`Operation.signature` and
:meth:`Operation.docstring`, an assistant tool its input schema from :meth:`Arg.tool_annotation`.
Values given in Python go through the same checks as typed ones (:meth:`Operation.bind`), so
``history(limit="x")`` is the same one-line error as ``--limit x``.

The call takes the environment's manager and the checked values and returns a *view*: a
UI-free object with ``text()`` and ``to_json()`` (and ``columns``/``rows()`` when it is a
table). Surfaces only lay it out.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import Field

from d365sync_nb.errors import ConfigurationError

REQUIRED: Any = inspect.Parameter.empty


class View(Protocol):
    """What every operation returns: one object that each surface lays out."""

    def text(self) -> str: ...

    def to_json(self) -> Any: ...


class TableView(View, Protocol):
    """A view that is also a table (``--csv``, a DataFrame)."""

    columns: Sequence[str]

    def rows(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Arg:
    """One argument of an operation.

    ``name`` is the Python keyword; the flag is ``--name`` with dashes unless ``flag`` says
    otherwise. ``positional`` arguments are typed without a flag (optional when they have a
    default); ``words`` makes a positional take several words joined by spaces. ``minimum`` /
    ``maximum`` bound a number; ``choices`` close a text (checked here), ``enum`` lists the
    values the core accepts (shown in help and tool schemas; the core checks and suggests).
    ``config_default`` names the notebook setting (``D365Sync.<name>``) giving the default
    in a notebook. ``repeat``: a text option that may be given several times (and each time
    comma separated); its value is a tuple of the texts.
    """

    name: str
    help: str
    kind: type = str
    default: Any = None
    positional: bool = False
    choices: tuple[str, ...] | None = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    flag: str | None = None
    metavar: str | None = None
    words: bool = False
    keyword_only: bool | None = None
    config_default: str | None = None
    missing: str | None = None  # what a required argument left empty says
    repeat: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    # -- text (argparse) -------------------------------------------------------------------
    def parse_text(self, text: str) -> Any:
        """A typed word as this argument's value; argparse turns the error into one line."""
        try:
            return self.check(text)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    def add_to(self, parser: argparse.ArgumentParser | Any) -> None:
        """Add this argument to an argparse parser (or mutually exclusive group)."""
        if self.kind is bool:
            parser.add_argument(self.cli_flag, dest=self.name, action="store_true", help=self.help)
            return
        options: dict[str, Any] = {"help": self.help, "type": self.parse_text}
        if self.repeat:
            options["action"] = "append"
            options["type"] = self._parse_item
        if self.metavar:
            options["metavar"] = self.metavar
        if self.choices:
            options["metavar"] = self.metavar or "{" + ",".join(self.choices) + "}"
        if self.positional:
            if self.words:
                options["nargs"] = "+" if self.required else "*"
                options["type"] = str
            elif not self.required:
                options["nargs"] = "?"
            parser.add_argument(self.name, default=_text_default(self), **options)
        else:
            parser.add_argument(self.cli_flag, dest=self.name, default=_text_default(self),
                                **options)  # fmt: skip

    def _parse_item(self, text: str) -> str:
        """One word of a repeated option (checked with the others by :meth:`check`)."""
        return text

    # -- Python values ---------------------------------------------------------------------
    def check(self, value: Any) -> Any:
        """The value, converted and checked; a ConfigurationError naming the argument if not."""
        if self.repeat and value is not None and value is not REQUIRED:
            return self._check_repeated(value)
        if value is None or value is REQUIRED:
            if self.required:
                raise ConfigurationError(self.missing or f"{self.label}: a value is required")
            return None
        if self.words and isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigurationError(f"{self.label}: expected true or false, not {value!r}")
            return value
        if self.kind is datetime:  # a date or ISO text the core reads, or a datetime
            if not isinstance(value, str | datetime):
                raise ConfigurationError(f"{self.label}: expected a date, not {_short(value)}")
            return value
        if self.kind is int:
            value = _integer(self, value)
        elif self.kind is float:
            value = _number(self, value)
        elif not isinstance(value, str):
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # a version id given as a number
            else:
                raise ConfigurationError(f"{self.label}: expected text, not {_short(value)}")
        if self.required and isinstance(value, str) and not value.strip():
            raise ConfigurationError(self.missing or f"{self.label}: a value is required")
        if self.choices is not None and value not in self.choices:
            raise ConfigurationError(
                f"{self.label}: one of {', '.join(self.choices)}, not {_short(value)}"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = self.minimum, self.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigurationError(
                    f"{self.label}: must be between {_num(low)} and {_num(high)}, not {value}"
                )
        return value

    def _check_repeated(self, value: Any) -> tuple[str, ...] | None:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigurationError(f"{self.label}: expected text or a list of texts, not "
                                     f"{_short(value)}")  # fmt: skip
        words = [w.strip() for item in items for w in item.split(",") if w.strip()]
        for word in words:
            if self.choices is not None and word not in self.choices:
                raise ConfigurationError(
                    f"{self.label}: one of {', '.join(self.choices)}, not {_short(word)}"
                )
        return tuple(words) or None

    @property
    def label(self) -> str:
        return self.name if self.positional else self.cli_flag

    # -- assistant tools -------------------------------------------------------------------
    def tool_annotation(self, *, description: str | None = None) -> Any:
        """The JSON-schema-carrying annotation of this argument for a tool's signature."""
        base: Any = {int: int, float: float, bool: bool}.get(self.kind, str)
        if self.repeat:
            base = str | list[str]
        extra: dict[str, Any] = {}
        if self.minimum is not None:
            extra["minimum"] = self.minimum
        if self.maximum is not None:
            extra["maximum"] = self.maximum
        text = description or self.help
        if self.default is not None:  # required, or a value by default: never null
            return Annotated[base, Field(description=text, json_schema_extra=extra or None)]
        choices = list(self.choices or self.enum or ())

        def schema(s: dict[str, Any]) -> None:
            for branch in s.get("anyOf", ()):
                if branch.get("type") not in (None, "null"):
                    branch.update(extra)
                    if choices:
                        branch["enum"] = choices

        return Annotated[base | None, Field(description=text, json_schema_extra=schema)]


@dataclass(frozen=True)
class Operation:
    """A user-facing operation: the one declaration every surface is derived from.

    ``call(manager, **values)`` runs it on the core and returns a view. ``cli`` / ``notebook``
    say where it appears; ``csv`` that its view is a table worth ``--csv``.
    """

    name: str
    summary: str
    doc: str
    args: tuple[Arg, ...]
    call: Callable[..., Any]
    cli: bool = True
    notebook: bool = True
    csv: bool = False
    json_help: str = "the result as JSON"
    python_name: str | None = None

    @property
    def function_name(self) -> str:
        return self.python_name or self.name

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for arg in self.args:
            arg.add_to(parser)

    def values(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """The parsed values of a namespace built by :meth:`add_arguments`."""
        return {arg.name: getattr(namespace, arg.name) for arg in self.args}

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every argument checked (:meth:`Arg.check`); unknown names refused."""
        unknown = set(values) - {arg.name for arg in self.args}
        if unknown:
            raise ConfigurationError(f"{self.name}: unknown argument {sorted(unknown)[0]!r}")
        return {arg.name: arg.check(values.get(arg.name, arg.default)) for arg in self.args}

    def signature(self, *, defaults: Mapping[str, Any] | None = None) -> inspect.Signature:
        """The Python function's signature: positional arguments first, options keyword-only
        (unless an argument says otherwise)."""
        params = []
        for arg in self.args:
            keyword_only = (not arg.positional) if arg.keyword_only is None else arg.keyword_only
            kind = (
                inspect.Parameter.KEYWORD_ONLY
                if keyword_only
                else inspect.Parameter.POSITIONAL_OR_KEYWORD
            )
            default = (defaults or {}).get(arg.name, arg.default)
            value_type: Any = str | datetime if arg.kind is datetime else arg.kind
            if arg.repeat:
                value_type = str | list[str]
            annotation = value_type if arg.required or arg.kind is bool else value_type | None
            params.append(inspect.Parameter(arg.name, kind, default=default,
                                            annotation=annotation))  # fmt: skip
        return inspect.Signature(_ordered(params))

    def docstring(self) -> str:
        """The doc, then one line per argument."""
        lines = [self.doc.strip(), "", "Arguments:"]
        for arg in self.args:
            lines.append(f"    {arg.name}: {arg.help}")
        return "\n".join(lines)

    def tool_signature(
        self,
        *,
        rename: Mapping[str, str] | None = None,
        replace: Mapping[str, Arg] | None = None,
        extra: Sequence[inspect.Parameter] = (),
        annotate: Mapping[str, Any] | None = None,
    ) -> inspect.Signature:
        """An assistant tool's signature from this operation's arguments (positional or
        keyword-only as in :meth:`signature`, each annotated with its JSON schema; positional
        ones first): ``rename`` gives a tool's own argument names,
        ``replace`` a tool's own bounds, ``annotate`` a tool's own annotation of an argument
        (e.g. a version that may be a number or a text), ``extra`` its further parameters
        (``profile``)."""
        params = []
        for original in self.args:
            arg = (replace or {}).get(original.name, original)
            annotation = (annotate or {}).get(arg.name) or arg.tool_annotation()
            keyword_only = (not arg.positional) if arg.keyword_only is None else arg.keyword_only
            params.append(
                inspect.Parameter(
                    (rename or {}).get(arg.name, arg.name),
                    inspect.Parameter.KEYWORD_ONLY
                    if keyword_only
                    else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=arg.default,
                    annotation=annotation,
                )
            )
        return inspect.Signature(_ordered([*params, *extra]))

    def run(self, manager: Any, values: Mapping[str, Any]) -> Any:
        """Check the values and call the core."""
        return self.call(manager, **self.bind(values))


def _ordered(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Positional-or-keyword before keyword-only; a required one before those with defaults."""
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return positional + keyword


def _text_default(arg: Arg) -> Any:
    return None if arg.required else arg.default


def _integer(arg: Arg, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"{arg.label}: expected a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigurationError(f"{arg.label}: expected a whole number, not {_short(value)}")


def _number(arg: Arg, value: Any) -> float:
    import math

    if isinstance(value, bool):
        raise ConfigurationError(f"{arg.label}: expected a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{arg.label}: expected a number, not {_short(value)}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{arg.label}: expected a finite number, not {_short(value)}")
    return number


def _num(value: float | None) -> str:
    if value is None:
        return "any"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
