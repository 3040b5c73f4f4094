"""`Critic`: checks a final answer before a run accepts it, and asks for revisions.

Cheap deterministic checks come first (length, a required pattern such as citations,
terms that must appear, phrases that must not, your own checks); an optional
model-graded check runs only once they all pass, so its cost is spent on answers that
could otherwise be accepted. The loop turns the issues into a revision request
(`revise_instruction`) up to `max_revisions` times, then finishes with
``critic_rejected=True`` and the issues on the result.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tether.errors import ConfigError

__all__ = ["Check", "Critic", "Grader"]

Check = Callable[[str], str | Sequence[str] | None]
"""A custom check: takes the answer, returns an issue, a list of issues, or `None`."""

Grader = Callable[[str], Awaitable[Sequence[str]]]
"""A model-graded check: takes the answer, returns its issues (empty when it passes)."""


@dataclass(frozen=True)
class Critic:
    """Reviews a final answer; each issue is a sentence the model can act on.

    Terms and phrases match case-insensitively, anywhere in the text (``"refund"``
    also matches ``"Refunded"``). For a structured output the critic reviews the
    output's JSON text.

    Args:
        max_chars: The longest acceptable answer, in characters.
        required_pattern: A regular expression the answer must match somewhere
            (`re.search`), e.g. ``r"\\[\\d+\\]"`` for numbered citations.
        required_pattern_hint: The issue reported when `required_pattern` does not
            match, said to the model (e.g. ``"Cite a source as [1] after each claim."``);
            empty for a generic sentence naming the pattern.
        banned_phrases: Phrases the answer must not contain.
        must_mention: Terms the answer must contain.
        checks: Your own checks, run in order after the built-in ones: each takes the
            text and returns an issue, a list of issues, or `None` (or empty) to pass.
        grader: An async, usually model-graded, check that returns a list of issues;
            it runs only when every deterministic check passes.
        max_revisions: How many times the model is asked to revise before the run
            finishes with the answer marked ``critic_rejected``.

    Example:
        ```python
        critic = Critic(
            max_chars=1200,
            required_pattern=r"\\[\\d+\\]",
            required_pattern_hint="Cite your sources as [1], [2], ... after each claim.",
            banned_phrases=["as an AI language model"],
            must_mention=["refund policy"],
        )
        critic.review("We cannot help.")  # ['The answer must cite ...', ...]
        ```
    """

    max_chars: int | None = None
    required_pattern: str | None = None
    required_pattern_hint: str = ""
    banned_phrases: Sequence[str] = ()
    must_mention: Sequence[str] = ()
    checks: Sequence[Check] = ()
    grader: Grader | None = None
    max_revisions: int = 2
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _banned: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _mentions: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_chars is not None and self.max_chars < 1:
            raise ConfigError(f"Critic.max_chars must be >= 1 (or None), got {self.max_chars}")
        if self.max_revisions < 0:
            raise ConfigError(f"Critic.max_revisions must be >= 0, got {self.max_revisions}")
        if self.required_pattern is not None:
            try:
                pattern = re.compile(self.required_pattern)
            except re.error as exc:
                raise ConfigError(
                    f"Critic.required_pattern {self.required_pattern!r} is not a valid "
                    f"regular expression ({exc}); write it as for re.search, e.g. r'\\[\\d+\\]'"
                ) from None
            object.__setattr__(self, "_pattern", pattern)
        for name in ("banned_phrases", "must_mention"):
            phrases = _phrases(name, getattr(self, name))
            object.__setattr__(self, name, phrases)
            object.__setattr__(
                self, "_banned" if name == "banned_phrases" else "_mentions", _folded(phrases)
            )
        checks = self.checks
        if callable(checks) or not all(callable(check) for check in checks):
            raise ConfigError(
                "Critic.checks takes a list of functions (text -> issue, list of issues "
                f"or None), got {checks!r}"
            )
        object.__setattr__(self, "checks", tuple(checks))
        if self.grader is not None and not callable(self.grader):
            raise ConfigError(
                f"Critic.grader must be an async function (text -> list of issues), "
                f"got {self.grader!r}"
            )

    def review(self, text: str) -> list[str]:
        """The deterministic issues with `text`, in a stable order (empty when it passes).

        The order is: length, required pattern, missing terms, banned phrases, then each
        custom check in turn.
        """
        issues: list[str] = []
        if self.max_chars is not None and len(text) > self.max_chars:
            issues.append(
                f"The answer is {len(text)} characters long; shorten it to at most "
                f"{self.max_chars} characters."
            )
        if self._pattern is not None and self._pattern.search(text) is None:
            issues.append(
                self.required_pattern_hint
                or f"The answer must contain text matching the pattern {self.required_pattern!r}."
            )
        folded = text.casefold() if self._mentions or self._banned else text
        missing = [
            term
            for term, key in zip(self.must_mention, self._mentions, strict=True)
            if key not in folded
        ]
        if missing:
            issues.append(f"The answer must mention {_listed(missing)}.")
        found = [
            phrase
            for phrase, key in zip(self.banned_phrases, self._banned, strict=True)
            if key in folded
        ]
        if found:
            them = "it" if len(found) == 1 else "them"
            issues.append(f"The answer must not contain {_listed(found)}; rephrase without {them}.")
        for check in self.checks:
            issues.extend(_issues(check(text), check))
        return issues

    async def assess(self, text: str) -> list[str]:
        """`review`, then the grader if every deterministic check passed."""
        issues = self.review(text)
        if issues or self.grader is None:
            return issues
        return _issues(await self.grader(text), self.grader)

    def revise_instruction(self, issues: Sequence[str]) -> str:
        """The user message asking the model to revise its answer, listing the issues."""
        points = "\n".join(f"- {issue}" for issue in issues)
        return (
            "Your answer cannot be accepted yet. Fix these issues:\n"
            f"{points}\n"
            "Write the complete revised answer (not only the changes), and make no "
            "other changes."
        )


def _phrases(name: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(
            f"Critic.{name} takes a list of phrases, got the string {value!r}; "
            f"write {name}=[{value!r}]"
        )
    phrases = tuple(value)
    for phrase in phrases:
        if not isinstance(phrase, str) or not phrase.strip():
            raise ConfigError(f"Critic.{name} must hold non-empty strings, got {phrase!r}")
    return phrases


def _folded(phrases: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(phrase.casefold() for phrase in phrases)


def _listed(terms: Sequence[str]) -> str:
    quoted = [f'"{term}"' for term in terms]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _issues(outcome: object, check: object) -> list[str]:
    """A check's outcome as a list of issues (dropping empty ones)."""
    if outcome is None:
        return []
    if isinstance(outcome, str):
        return [outcome] if outcome.strip() else []
    if isinstance(outcome, Sequence) and all(isinstance(issue, str) for issue in outcome):
        return [issue for issue in outcome if issue.strip()]
    raise ConfigError(
        f"the critic check {_name_of(check)} returned {outcome!r}; a check returns an "
        "issue (str), a list of issues, or None when the text passes"
    )


def _name_of(check: object) -> str:
    return getattr(check, "__qualname__", None) or repr(check)
