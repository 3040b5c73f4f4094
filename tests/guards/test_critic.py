"""`Critic`: each check, their order, custom checks, the grader, and config errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from tether import Agent
from tether.errors import ConfigError
from tether.guards import Critic
from tether.messages import UserMessage
from tether.testing import ScriptedModel, call, reply

CITATIONS = r"\[\d+\]"


class TestChecks:
    def test_passing_text_has_no_issues(self) -> None:
        critic = Critic(
            max_chars=100,
            required_pattern=CITATIONS,
            banned_phrases=["as an AI"],
            must_mention=["refund"],
        )
        assert critic.review("Your refund is on its way [1].") == []

    def test_max_chars(self) -> None:
        critic = Critic(max_chars=10)
        assert critic.review("x" * 10) == []
        assert critic.review("x" * 11) == [
            "The answer is 11 characters long; shorten it to at most 10 characters."
        ]

    def test_required_pattern_with_hint(self) -> None:
        critic = Critic(required_pattern=CITATIONS, required_pattern_hint="Cite sources as [1].")
        assert critic.review("No sources.") == ["Cite sources as [1]."]
        assert critic.review("Sourced [12].") == []

    def test_required_pattern_without_hint_names_it(self) -> None:
        (issue,) = Critic(required_pattern=CITATIONS).review("No sources.")
        assert CITATIONS.replace("\\", "\\\\") in issue  # as repr() shows it

    def test_required_pattern_searches_anywhere(self) -> None:
        assert Critic(required_pattern="b+").review("aaabbbccc") == []

    def test_must_mention_is_case_insensitive_and_lists_what_is_missing(self) -> None:
        critic = Critic(must_mention=["Refund", "order number", "policy"])
        assert critic.review("The REFUND follows our Policy.") == [
            'The answer must mention "order number".'
        ]
        assert critic.review("Nothing.") == [
            'The answer must mention "Refund", "order number" and "policy".'
        ]

    def test_banned_phrases_are_case_insensitive(self) -> None:
        critic = Critic(banned_phrases=["as an AI", "unfortunately"])
        assert critic.review("Fine.") == []
        (issue,) = critic.review("UNFORTUNATELY, As An Ai I cannot.")
        assert (
            issue
            == 'The answer must not contain "as an AI" and "unfortunately"; rephrase without them.'
        )

    def test_non_ascii_case_folding(self) -> None:
        assert Critic(must_mention=["STRASSE"]).review("die straße") == []

    def test_issues_in_a_stable_order(self) -> None:
        critic = Critic(
            checks=[lambda text: "custom one", lambda text: ["custom two", "custom three"]],
            banned_phrases=["bad"],
            must_mention=["good"],
            required_pattern=CITATIONS,
            required_pattern_hint="pattern",
            max_chars=3,
        )
        issues = critic.review("bad text")
        assert issues[0].startswith("The answer is 8 characters long")
        assert issues[1:] == [
            "pattern",
            'The answer must mention "good".',
            'The answer must not contain "bad"; rephrase without it.',
            "custom one",
            "custom two",
            "custom three",
        ]
        assert critic.review("bad text") == issues


class TestCustomChecks:
    @pytest.mark.parametrize(
        ("outcome", "issues"),
        [
            (None, []),
            ("", []),
            ("Say hello.", ["Say hello."]),
            (["One.", "Two."], ["One.", "Two."]),
            (("One.", ""), ["One."]),
            ([], []),
        ],
    )
    def test_outcomes(self, outcome: Any, issues: list[str]) -> None:
        assert Critic(checks=[lambda text: outcome]).review("text") == issues

    def test_a_check_sees_the_text(self) -> None:
        seen: list[str] = []
        Critic(checks=[lambda text: seen.append(text)]).review("the answer")
        assert seen == ["the answer"]

    def test_a_check_returning_something_else_names_itself(self) -> None:
        def counts_words(text: str) -> Any:
            return len(text.split())

        with pytest.raises(ConfigError, match="counts_words returned 2"):
            Critic(checks=[counts_words]).review("two words")


class Grader:
    """A fake model-graded check that counts its calls."""

    def __init__(self, issues: Sequence[str] = ()) -> None:
        self.issues = list(issues)
        self.calls: list[str] = []

    async def __call__(self, text: str) -> Sequence[str]:
        self.calls.append(text)
        return self.issues


class TestAssess:
    async def test_grader_runs_only_after_every_deterministic_check_passes(self) -> None:
        grader = Grader(["Too vague."])
        critic = Critic(must_mention=["refund"], grader=grader)
        assert await critic.assess("No.") == ['The answer must mention "refund".']
        assert grader.calls == []
        assert await critic.assess("A refund.") == ["Too vague."]
        assert grader.calls == ["A refund."]

    async def test_grader_passing(self) -> None:
        grader = Grader()
        assert await Critic(grader=grader).assess("Fine.") == []
        assert len(grader.calls) == 1

    async def test_grader_issues_are_cleaned_like_check_issues(self) -> None:
        assert await Critic(grader=Grader(["", "Be specific."])).assess("x") == ["Be specific."]

    async def test_without_grader_assess_is_review(self) -> None:
        critic = Critic(max_chars=2)
        assert await critic.assess("long") == critic.review("long")


class TestReviseInstruction:
    def test_lists_every_issue(self) -> None:
        text = Critic().revise_instruction(["First issue.", "Second issue."])
        assert "- First issue.\n- Second issue." in text
        assert "revised answer" in text


class TestConfig:
    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"max_chars": -1}, "max_chars must be >= 1"),
            ({"max_chars": 0}, "max_chars must be >= 1"),
            ({"max_revisions": -1}, "max_revisions must be >= 0"),
            ({"required_pattern": "[unclosed"}, r"required_pattern '\[unclosed' is not a valid"),
            ({"banned_phrases": "as an AI"}, r"banned_phrases=\['as an AI'\]"),
            ({"must_mention": ["ok", ""]}, "must_mention must hold non-empty strings"),
            ({"must_mention": [3]}, "must_mention must hold non-empty strings"),
            ({"checks": len}, "checks takes a list of functions"),
            ({"checks": ["not callable"]}, "checks takes a list of functions"),
            ({"grader": "gpt"}, "grader must be an async function"),
        ],
    )
    def test_bad_config(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            Critic(**options)

    def test_sequences_are_kept_as_tuples(self) -> None:
        critic = Critic(banned_phrases=["a"], must_mention=["b"], checks=[str.strip])
        assert critic.banned_phrases == ("a",)
        assert critic.must_mention == ("b",)
        hash(critic)  # frozen, and hashable once lists became tuples

    def test_equal_configs_are_equal(self) -> None:
        assert Critic(required_pattern="x", must_mention=["a"]) == Critic(
            required_pattern="x", must_mention=("a",)
        )

    def test_max_revisions_defaults_to_two(self) -> None:
        assert Critic().max_revisions == 2


class TestThroughAgent:
    """`Agent(critic=...)`: revision requests and the rejected flag, through whole runs."""

    async def test_revision_request_then_revised_answer_completes(self) -> None:
        critic = Critic(must_mention=["refund"])
        model = ScriptedModel([reply("We are sorry."), reply("Your refund is on its way.")])
        result = await Agent(model=model, critic=critic).run("Where is my money?")

        assert result.status == "completed"
        assert result.output == "Your refund is on its way."
        assert result.critic_rejected is False
        assert result.critic_issues == []
        asked = model.requests[1].messages[-1]
        assert isinstance(asked, UserMessage)
        assert asked.content == critic.revise_instruction(['The answer must mention "refund".'])
        model.assert_complete()

    async def test_rejected_after_max_revisions(self) -> None:
        critic = Critic(must_mention=["refund"], max_revisions=2)
        model = ScriptedModel([reply("No."), reply("Still no."), reply("Never.")])
        result = await Agent(model=model, critic=critic).run("Where is my money?")

        assert result.status == "completed"
        assert result.output == "Never."
        assert result.critic_rejected is True
        assert result.critic_issues == ['The answer must mention "refund".']
        assert len(model.requests) == 3
        model.assert_complete()

    async def test_grader_runs_in_the_loop_only_on_deterministic_passes(self) -> None:
        grader = Grader()
        critic = Critic(must_mention=["refund"], grader=grader)
        model = ScriptedModel([reply("No."), reply("A refund.")])
        result = await Agent(model=model, critic=critic).run("?")
        assert result.output == "A refund."
        assert grader.calls == ["A refund."]

    async def test_structured_output_is_reviewed_as_json(self) -> None:
        class Decision(BaseModel):
            approve: bool
            reason: str

        seen: list[str] = []
        critic = Critic(must_mention=["policy"], checks=[seen.append])
        model = ScriptedModel(
            [
                call("final_result", approve=False, reason="too late"),
                call("final_result", approve=False, reason="past the policy window"),
            ]
        )
        result = await Agent(model=model, output=Decision, critic=critic).run("Refund?")
        assert result.output == Decision(approve=False, reason="past the policy window")
        assert result.critic_rejected is False
        assert json.loads(seen[0]) == {"approve": False, "reason": "too late"}
        model.assert_complete()
