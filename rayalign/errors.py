"""Errors a user fixes, and the one mechanism that turns them into one ``error:`` line.

Much of rayalign runs inside Ray actors and tasks (the RLTHF driver, Ray Data labelling
actors, Ray Train workers). An error raised there reaches the command line wrapped: a
``RayTaskError`` carrying the original exception as ``cause``, or an ``ActorDiedError``
that keeps only the original traceback as text (Ray does not keep the exception object of
a failed actor constructor). ``user_message`` looks through both, so every command prints
the useful line instead of ~200 lines of Ray traceback, without any call site catching
anything. Errors that are not the user's to fix (bugs) return ``None`` and keep their
traceback.
"""

from __future__ import annotations

import re

__all__ = ["UserError", "JudgeFailed", "user_message"]


class UserError(Exception):
    """An error the user fixes (input, config, environment); its message says how."""


class JudgeFailed(UserError):
    """Every judgment of a labelling run failed: nothing to build on, say why."""


#: Built-in and library exception types whose message is meant for the user.
_USER_TYPES: tuple[type[BaseException], ...] = (
    UserError, ValueError, FileNotFoundError, FileExistsError, PermissionError,
    IsADirectoryError, NotADirectoryError,
)
#: The same, by name, for errors that reach us only as traceback text (ActorDiedError).
_USER_NAMES = {t.__name__ for t in _USER_TYPES} | {
    "ConfigError", "RunDirBusy", "JudgeFailed", "ValidationError",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _from_traceback_text(text: str) -> str | None:
    """The user-facing message in a traceback printed as text, if its error is one."""
    text = _ANSI.sub("", text)
    found = None
    for m in re.finditer(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Busy|Failed|Pending)): ",
                         text, re.MULTILINE):
        found = m
    if found is None or found.group(1) not in _USER_NAMES:
        return None
    return text[found.end():].strip() or None


def _chain(exc: BaseException):
    """``exc`` and what it wraps: Ray's ``cause``, then ``__cause__`` (no cycles)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cause = getattr(cur, "cause", None)
        cur = cause if isinstance(cause, BaseException) else cur.__cause__


def _is_ray_wrapper(exc: BaseException) -> bool:
    return any(c.__module__.startswith("ray.") for c in type(exc).__mro__
               if c.__name__ in ("RayError", "RayTaskError", "RayActorError"))


def user_message(exc: BaseException) -> str | None:
    """One line (or a short block, for a config with several bad fields) for the user.

    ``None`` when the error is a bug or unknown: the caller should show the traceback.
    """
    for e in _chain(exc):
        if _is_ray_wrapper(e):
            if isinstance(getattr(e, "cause", None), BaseException):
                continue  # RayTaskError(X) is also an X; its str() is the whole traceback
            msg = _from_traceback_text(str(e))
            if msg:
                return msg
            continue
        if isinstance(e, _USER_TYPES):
            text = _ANSI.sub("", str(e)).strip()
            return text or type(e).__name__
        # Ray Data wraps a UDF's exception; pickling may drop __cause__, the text stays.
        if type(e).__name__ == "UserCodeException":
            msg = _from_traceback_text(str(e))
            if msg:
                return msg
    return None
