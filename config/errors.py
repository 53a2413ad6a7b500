"""One readable error for an invalid environment: :class:`SettingsError`.

pydantic reports problems by field name and, by default, echoes the rejected input. A
deployment is configured through environment variables, and rejected inputs may be
secrets, so :meth:`SettingsError.from_validation_error` re-renders pydantic's
``ValidationError``:

* every problem is listed (pydantic already collects them; we keep them all), each under
  its **environment-variable name** and its field name, so the fix is obvious whether the
  value came from the environment, a ``.env`` file or a keyword argument;
* the rejected value is shown **masked** when the field is secret (and any URL password
  is masked in every value), via :mod:`infra.redaction`;
* the structured list sits in ``details["errors"]`` as
  ``{"env", "field", "expected", "got"}`` dicts for tools and tests.

``Settings`` sets pydantic's ``hide_input_in_errors`` too, so the chained original
``ValidationError`` (kept as ``__cause__`` for debugging) cannot print a secret either.

A small helper lives here as well: :func:`reject_unknown_keywords` (a typo in a keyword
argument is a programming error, so it raises ``TypeError`` at once instead of being
silently ignored like an unknown environment variable).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from pydantic import ValidationError

from infra.exceptions import ConfigurationError
from infra.redaction import REDACTED, redact_chained, redact_value

__all__ = ["SettingsError", "reject_unknown_keywords"]

# pydantic phrases messages as "Input should be X" / "Value error, X"; we print
# "expected X", so those lead-ins are dropped.
_LEAD_INS: Final = ("Value error, ", "Input should be ")


class SettingsError(ConfigurationError):
    """The settings are invalid; ``details["errors"]`` lists every problem.

    Each entry is ``{"env": "SEMANTICA_REDIS_PORT", "field": "redis_port",
    "expected": "less than or equal to 65535", "got": "99999"}``; ``got`` is masked for
    secret fields.
    """

    default_message = "invalid settings"

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The problems, one dict per bad field (see the class docstring)."""
        errors: list[dict[str, Any]] = self.details.get("errors", [])
        return errors

    def __str__(self) -> str:
        # The message already lists every problem; InfraError.__str__ would append the
        # same list again from ``details``.
        redact_chained(self)
        return f"[{self.component}] {self.message}" if self.component else self.message

    @classmethod
    def from_validation_error(
        cls,
        exc: ValidationError,
        *,
        env_prefix: str,
        secret_fields: Collection[str] = (),
        field_of: Callable[[tuple[int | str, ...]], str] | None = None,
    ) -> SettingsError:
        """Translate pydantic's error into one ``SettingsError`` naming env variables.

        Args:
            exc: The error raised while validating the settings.
            env_prefix: Prefix of the environment variables (``"SEMANTICA_"``).
            secret_fields: Fields whose rejected value must never be shown.
            field_of: The field (flat name) an error location points at; by default
                its first part.
        """
        problems = [
            _problem(err, env_prefix, secret_fields, field_of or _first) for err in exc.errors()
        ]
        lines = [
            f"  {p['env']} ({p['field']}): expected {p['expected']}; got {p['got']!r}"
            for p in problems
        ]
        noun = "problem" if len(problems) == 1 else "problems"
        message = "\n".join(
            [
                (
                    f"invalid settings ({len(problems)} {noun}); fix these environment "
                    "variables (or the matching keyword arguments / .env entries):"
                ),
                *lines,
            ]
        )
        return cls(message, component="config", details={"errors": problems})


def _first(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]) if loc else ""


def _problem(
    err: Mapping[str, Any],
    env_prefix: str,
    secret_fields: Collection[str],
    field_of: Callable[[tuple[int | str, ...]], str],
) -> dict[str, Any]:
    field = field_of(tuple(err.get("loc", ())))
    env = f"{env_prefix}{field}".upper() if field else f"{env_prefix}*"
    expected = str(err.get("msg", "a valid value"))
    for lead_in in _LEAD_INS:
        expected = expected.removeprefix(lead_in)
    if expected.startswith(("less than", "greater than")):
        expected = f"a value {expected}"  # "expected a value less than or equal to 65535"
    got = err.get("input")
    secret = field in secret_fields and got not in (None, "")
    got = REDACTED if secret else redact_value(field, got)
    return {"env": env, "field": field, "expected": expected, "got": got}


def reject_unknown_keywords(owner: str, values: Mapping[str, Any], known: Collection[str]) -> None:
    """``TypeError`` for keyword arguments not in ``known`` (``_env_file`` etc. pass)."""
    for key in values:
        if key.startswith("_") or key.lower() in known:
            continue
        import difflib  # noqa: PLC0415 - only on this error path

        close = difflib.get_close_matches(key.lower(), list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}{hint}")
