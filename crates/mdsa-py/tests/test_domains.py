"""Domains: the built-ins, domains given in code, added, removed, reloaded; config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import mdsa

COOKING = mdsa.Domain(
    "cooking",
    "Cooking",
    description="Recipes, baking, ingredients and kitchen techniques",
    keywords=["recipe", "bake", "oven", "flour"],
    examples=[
        "How do I bake banana bread?",
        "What can I use instead of eggs in a cake?",
        "How long should I roast a chicken?",
        "Give me a recipe for pancakes",
        "How do I make bread rise?",
    ],
    generation={"max_tokens": 24},
)


def test_the_four_built_in_domains_are_there() -> None:
    ids = [d.id for d in mdsa.builtin_domains()]
    assert ids == ["finance", "medical", "support", "technical"]
    finance = mdsa.Domain.builtin("finance")
    assert finance.name and len(finance.examples) > 30 and "balance" in finance.keywords
    with pytest.raises(mdsa.ConfigError, match="finance, medical, support, technical"):
        mdsa.Domain.builtin("astrology")


def test_mdsa_uses_the_built_ins_by_default(m: mdsa.MDSA) -> None:
    assert m.domain_ids == ["finance", "medical", "support", "technical"]
    assert m.domains()[0] == mdsa.Domain.builtin("finance")
    assert "finance" in repr(m)


def test_domains_given_in_code_route_and_answer() -> None:
    m = mdsa.MDSA(domains=[mdsa.Domain.builtin("medical"), COOKING])
    assert m.domain_ids == ["medical", "cooking"]
    result = m.query("Give me a recipe for banana bread")
    assert result.domain == "cooking"
    assert 0 < result.usage.completion_tokens <= 24
    assert m.route("I have a fever").domain == "medical"


def test_add_and_remove_a_domain_at_run_time() -> None:
    m = mdsa.MDSA(domains=[mdsa.Domain.builtin("finance")])
    assert m.route("How do I bake banana bread?").domain != "cooking"
    assert m.add_domain(COOKING) is False
    assert m.route("How do I bake banana bread?").domain == "cooking"
    # Replacing by id, given as fields.
    assert m.add_domain(id="cooking", name="Kitchen", examples=COOKING.examples) is True
    assert [d.name for d in m.domains()] == [mdsa.Domain.builtin("finance").name, "Kitchen"]
    assert m.remove_domain("cooking") is True
    assert m.remove_domain("cooking") is False
    assert m.domain_ids == ["finance"]


def test_reload_domains_from_a_file(tmp_path: Path) -> None:
    m = mdsa.MDSA(domains=[mdsa.Domain.builtin("finance")])
    path = tmp_path / "domains.ron"
    path.write_text(
        """(
    domains: [
        (
            id: "legal",
            name: "Legal",
            description: "Contracts, tenancy, employment law and disputes",
            keywords: ["contract", "lawyer", "landlord", "sue"],
            examples: [
                "Can my landlord keep my deposit?",
                "Is a verbal contract binding?",
                "Can I sue my employer for unpaid wages?",
            ],
        ),
    ],
)
""",
        encoding="utf-8",
    )
    m.reload_domains(path)
    assert m.domain_ids == ["legal"]
    assert m.route("My landlord won't return my deposit").domain == "legal"
    # The same file at construction.
    assert mdsa.MDSA(domains=path).domain_ids == ["legal"]


def test_a_broken_domains_file_names_the_file_and_place(tmp_path: Path) -> None:
    m = mdsa.MDSA(domains=[mdsa.Domain.builtin("finance")])
    path = tmp_path / "broken.ron"
    path.write_text('(domains: [(id: "x", name: "X", colour: "red")])', encoding="utf-8")
    with pytest.raises(mdsa.ConfigError, match="broken.ron") as caught:
        m.reload_domains(path)
    assert "colour" in str(caught.value)
    assert m.domain_ids == ["finance"], "a failed reload must keep the domains in use"
    with pytest.raises(mdsa.ConfigError, match="missing.ron"):
        m.reload_domains(tmp_path / "missing.ron")


def test_bad_domains_in_code_are_config_errors() -> None:
    with pytest.raises(mdsa.ConfigError, match="keywords"):
        mdsa.Domain("x", "X", keywords="not a list")  # type: ignore[arg-type]
    with pytest.raises(mdsa.ConfigError, match="colour"):
        mdsa.Domain.from_dict({"id": "x", "name": "X", "colour": "red"})
    with pytest.raises(mdsa.RequestError, match=r"temprature"):
        mdsa.MDSA(domains=[mdsa.Domain("x", "X", examples=["a b c"], generation={"temprature": 2})])
    with pytest.raises(mdsa.RequestError, match=r"domains\[0\]"):
        mdsa.MDSA(domains=["finance"])  # type: ignore[list-item]
    with pytest.raises(mdsa.ConfigError, match="id"):
        mdsa.MDSA(domains=[mdsa.Domain("", "Nameless", examples=["a"])])


def test_a_bad_config_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "mdsa.ron"
    config.write_text("(budget: (max_models: \"two\"))", encoding="utf-8")
    with pytest.raises(mdsa.ConfigError, match="mdsa.ron"):
        mdsa.MDSA(config=config)
    with pytest.raises(mdsa.ConfigError, match="nowhere.ron"):
        mdsa.MDSA(config=tmp_path / "nowhere.ron")
