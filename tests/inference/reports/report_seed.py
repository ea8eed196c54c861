"""The type of the reports tests' `seed` fixture, in a module of its own: test files import
it by a name no other folder's modules use (every test folder has a `conftest`)."""

from collections.abc import Callable

Seed = Callable[..., str]
"""`seed(at, verdict="OK", station="S1", ...)`: one stored result; its id."""
