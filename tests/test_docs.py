"""docs/method.md stays in step with the code: every recipe key is explained, and every link into it lands."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from asgl.config import Recipe

ROOT = Path(__file__).resolve().parent.parent
METHOD = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
SECTIONS = "|".join(Recipe.model_fields)


def section_models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (a plain model, a union of models, Annotated[...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is list:  # a list of tables (model.layers) is one key, explained as a whole
        return []
    return [m for arg in typing.get_args(annotation) for m in section_models(arg)]


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted recipe keys (``data.audio_augment.gain_db``) of every model a section may hold."""
    keys = set()
    for name, field in model.model_fields.items():
        nested = section_models(field.annotation)
        keys |= {k for m in nested for k in schema_keys(m, f"{prefix}{name}.")} if nested else {prefix + name}
    return keys


def project_texts() -> dict[Path, str]:
    files = [ROOT / "README.md", *(ROOT / "recipes").glob("*.toml"), *(ROOT / "docs").glob("*.md")]
    for folder in ("asgl", "asgl_cli", "tests", "benchmarks"):
        files += (ROOT / folder).rglob("*.py")
    return {f: f.read_text(encoding="utf-8") for f in files}


def heading_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings: lower case, punctuation dropped, spaces -> hyphens."""
    titles = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).strip().replace(" ", "-") for t in titles}


def test_every_recipe_key_is_explained_in_method_md():
    keys = schema_keys(Recipe)
    assert {"run.seed", "surrogate.width", "noise.prob", "data.audio_augment.gain_db"} <= keys
    missing = sorted(k for k in keys if f"`{k}`" not in METHOD)
    assert not missing, f"recipe keys not explained in docs/method.md: {missing}"


def test_every_key_method_md_names_exists():
    named = set(re.findall(rf"`((?:{SECTIONS})\.[a-z_]+(?:\.[a-z_]+)?)(?:`| *=)", METHOD))
    assert len(named) > 50
    unknown = sorted(named - schema_keys(Recipe))
    assert not unknown, f"docs/method.md explains keys the schema does not have: {unknown}"


def test_links_into_method_md_land_on_a_heading():
    anchors = heading_anchors(METHOD)
    assert {"the-hybrid-spike", "the-noise-schedule", "the-lif-neuron", "recipe-keys"} <= anchors
    links = {(path, a) for path, text in project_texts().items() for a in re.findall(r"method\.md#([\w-]+)", text)}
    assert len(links) > 10
    broken = sorted(f"{p.relative_to(ROOT)}: #{a}" for p, a in links if a not in anchors)
    assert not broken, broken


def test_nothing_cites_a_document_the_project_does_not_ship():
    citation = re.compile("SPEC" + r"\s*§")
    cited = sorted(str(p.relative_to(ROOT)) for p, text in project_texts().items() if citation.search(text))
    assert not cited, f"cite docs/method.md instead in: {cited}"
