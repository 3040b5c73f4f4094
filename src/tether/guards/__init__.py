"""Guards: checks on what goes into a run and what comes out of it."""

from tether.guards.critic import Check, Critic, Grader

__all__ = ["Check", "Critic", "Grader"]
