"""The package as type checkers and IDEs see it: annotations, stubs, names."""

from __future__ import annotations

import inspect
from pathlib import Path

import mdsa
from mdsa import _native


def test_every_public_method_is_annotated_and_documented() -> None:
    for cls in (mdsa.MDSA, mdsa.Stream, mdsa.Domain):
        assert cls.__doc__, cls
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_") and name not in ("__init__", "__next__"):
                continue
            signature = inspect.signature(member)
            assert signature.return_annotation is not inspect.Signature.empty, f"{cls.__name__}.{name}"
            for parameter in signature.parameters.values():
                if parameter.name in ("self", "cls") or parameter.kind is parameter.VAR_POSITIONAL:
                    continue
                assert parameter.annotation is not inspect.Parameter.empty, f"{cls.__name__}.{name}({parameter.name})"
            if not name.startswith("_"):
                assert member.__doc__, f"{cls.__name__}.{name} has no docstring"


def test_the_wheel_ships_the_stubs_and_the_typed_marker() -> None:
    package = Path(mdsa.__file__).parent
    assert (package / "py.typed").is_file()
    stub = (package / "_native.pyi").read_text(encoding="utf-8")
    # Every method of the extension's classes is in the stubs.
    for cls in (_native.Engine, _native.Stream):
        for name in dir(cls):
            if not name.startswith("_") or name in ("__next__", "__iter__"):
                assert f"def {name}(" in stub, f"{cls.__name__}.{name} is missing from _native.pyi"


def test_the_names_the_issue_lists_are_exported() -> None:
    for name in ("MDSA", "Domain", "MdsaError", "ConfigError", "ModelError", "RoutingError", "RequestError"):
        assert name in mdsa.__all__ and hasattr(mdsa, name)
    assert issubclass(mdsa.ConfigError, mdsa.MdsaError) and issubclass(mdsa.ConfigError, ValueError)
    assert mdsa.__version__
