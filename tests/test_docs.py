"""The docs stay in step with the code: every recipe key is explained in docs/method.md, every link into it
lands, and every command, option, recipe, backend and surrogate family the docs name exists."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import typer
from pydantic import BaseModel

from asgl.config import Recipe
from asgl_cli.main import app

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


# ---------------------------------------------------------------- commands and names in the docs

DOCS = {p: p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
RECIPE_PARAMS = {"recipe", "name", "files"}  # parameters that take a recipe (a file or a bundled name)
KEY_PARAMS = {"--set", "--axis"}  # options whose value is key=value(s)


def code_of(markdown: str) -> list[str]:
    """The code of a Markdown page: fenced blocks, indented blocks after a blank line, inline code spans;
    shell continuation lines joined and comments dropped."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.M | re.S)
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    indented = [re.sub(r"^ {4}", "", b, flags=re.M) for b in re.findall(r"(?<=\n\n)((?: {4}.*(?:\n|$))+)", prose)]
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"(?<=\n\n)(?: {4}.*(?:\n|$))+", "", prose))
    code = "\n".join(fenced + indented + inline).replace("\\\n", " ")
    return [re.sub(r"(^|\s)#.*", "", line) for line in code.splitlines()]


def asgl_commands(markdown: str) -> list[str]:
    """Every ``asgl ...`` command line in the page's code (what follows ``asgl``), cut at ``&&`` and ``;``.

    A line or span that starts with ``asgl`` (after ``$``, ``VAR=value``, ``srun`` or a ``.../bin/`` folder) is a
    command; elsewhere (prose quoted in code: ``not an asgl checkpoint``) only ``asgl`` before a command name is.
    """
    names = set(typer.main.get_command(app).commands)
    found = []
    for line in code_of(markdown):
        for m in re.finditer(r"(?<![\w.-])asgl (.*)", line):
            command = re.split(r"\s(?:&&|;|\|\|)\s", m.group(1))[0].strip()
            leading = re.fullmatch(r"\s*(?:(?:\$|srun|[A-Z_]+=\S*)\s+)*(?:\S*/)?", line[: m.start()])
            if leading or command.split(" ", 1)[0] in names:
                found.append(command)
    return found


def split_alternatives(command: str) -> list[str]:
    """``a X | b Y`` -> [``a X``, ``b Y``]: splits at `` | `` outside brackets (``[--split val|test]`` stays)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(command):
        depth += ch in "[({"
        depth -= ch in "])}"
        if depth == 0 and command.startswith(" | ", i):
            parts.append(command[start:i])
            start = i + 3
    return [*parts, command[start:]]


def backends() -> set[str]:
    from asgl.neuron import BACKENDS

    return set(BACKENDS) | {"triton"}  # triton registers itself only where CUDA and Triton are present


def surrogate_families() -> set[str]:
    from asgl.surrogates import SURROGATES

    return set(SURROGATES)


def value_problems(param: object, value: str) -> list[str]:
    """What is wrong with ``value`` given to ``param``: an unknown recipe, recipe key, backend or family."""
    from asgl.bench import VARIANTS
    from asgl.config import bundled_recipes

    value = value.strip("\"'")
    if param.name in RECIPE_PARAMS and re.fullmatch(r"[a-z0-9_]+", value) and value not in bundled_recipes():
        return [f"recipe {value!r}"]
    if param.name == "variants":
        return [f"bench variant {v!r}" for v in value.split(",") if v not in VARIANTS]
    m = re.fullmatch(r"([a-z_]+\.[a-z_.]+)=(.*)", value)
    if not (set(param.opts) & KEY_PARAMS and m):
        return []
    key, values = m.group(1), m.group(2).strip("\"'").split(",")
    registry = {"neuron.backend": backends() | {"auto"}, "surrogate.family": surrogate_families()}.get(key)
    problems = [] if key in schema_keys(Recipe) else [f"recipe key {key!r}"]
    return problems + [f"{key} value {v!r}" for v in values if registry is not None and v not in registry]


def parameter_problems(command: object, tokens: list[str]) -> list[str]:
    """Unknown options, and bad values (see :func:`value_problems`), among a command's ``tokens``."""
    options = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    arguments = [p for p in command.params if not any(o.startswith("-") for o in p.opts)]
    tokens = [t.strip("[](){}") for t in tokens]
    tokens = [t for t in tokens if t and t != "|" and "..." not in t and not t.startswith("$")]
    problems, position = [], 0
    while tokens:
        token = tokens.pop(0)
        if re.match(r"--?[A-Za-z]", token):
            name, has_value, value = token.partition("=")
            if name == "--help":
                continue
            if name not in options:
                problems.append(f"option {name}")
                continue
            param = options[name]
            if not param.is_flag and not has_value and tokens:
                value = tokens.pop(0)
            problems += value_problems(param, value)
        elif position < len(arguments):
            problems += value_problems(arguments[position], token)
            position += arguments[position].nargs != -1
    return problems


def command_problems(line: str) -> list[str]:
    """What in one documented ``asgl`` command line the app does not have (command, option, name)."""
    app_command = typer.main.get_command(app)
    alternatives = split_alternatives(line)
    tokens = alternatives[0].split()
    command, path = app_command, []
    while getattr(command, "commands", None) and tokens and re.fullmatch(r"[a-z][\w-]*", tokens[0]):
        name = tokens.pop(0)
        if name not in command.commands:
            return [f"command asgl {' '.join([*path, name])}"]
        command, path, parent = command.commands[name], [*path, name], command
    problems = parameter_problems(command, tokens)
    for alternative in alternatives[1:]:  # `recipes list | show NAME`; anything else is a pipe into another program
        if not path or alternative.split()[0] not in getattr(parent, "commands", {}):
            break
        problems += command_problems(" ".join([*path[:-1], alternative]))
    return problems


def test_the_command_checker_finds_what_the_app_lacks():
    page = "Run\n\n    asgl train digits_quick --bogus 1   # a comment --also-bogus\n\nor `asgl frobnicate x`, "
    page += "not `an asgl run` nor `call asgl and go` (prose in code), "
    page += "`asgl recipes list | show no_such_recipe | cp digits_deep x.toml`, `asgl eval --json | jq .`, "
    page += "`asgl sweep grid R --axis neuron.backend=fused,gpu_magic --set surrogate.family=sigmoid --set a.b=1`."
    commands = asgl_commands(page)
    assert commands == [
        "train digits_quick --bogus 1",
        "frobnicate x",
        "recipes list | show no_such_recipe | cp digits_deep x.toml",
        "eval --json | jq .",
        "sweep grid R --axis neuron.backend=fused,gpu_magic --set surrogate.family=sigmoid --set a.b=1",
    ]
    assert [command_problems(c) for c in commands] == [
        ["option --bogus"],
        ["command asgl frobnicate"],
        ["recipe 'no_such_recipe'"],
        [],
        ["neuron.backend value 'gpu_magic'", "recipe key 'a.b'"],
    ]


def test_every_asgl_command_in_the_docs_exists_with_its_options():
    commands = {(p, c) for p, text in DOCS.items() for c in asgl_commands(text)}
    assert len(commands) > 60
    named = {c.split()[0] for _, c in commands}
    assert {"train", "eval", "sweep", "diagnose", "recipes", "data", "bench", "export", "import-reference"} <= named
    problems = sorted(f"{p.relative_to(ROOT)}: asgl {c}: {x}" for p, c in commands for x in command_problems(c))
    assert not problems, "the docs name what asgl does not have:\n" + "\n".join(problems)


def test_every_backend_family_and_recipe_named_in_the_docs_is_registered():
    from asgl.builders import MODELS
    from asgl.config import bundled_recipes
    from asgl.data import DATASETS

    text = "\n".join(DOCS.values())
    named_backends = re.findall(r'backend\s*=\s*"?(\w+)', text) + re.findall(r'backend `"?(\w+)"?`', text)
    named_families = re.findall(r'family\s*=\s*"?(\w+)', text)
    assert {"fused", "cpu_kernel", "triton"} <= set(named_backends) and "sigmoid" in named_families
    assert set(named_backends) - backends() - {"auto"} == set()
    assert set(named_families) - surrogate_families() == set()

    prefixes = "|".join(sorted(DATASETS, key=len, reverse=True))
    recipe_like = {n for n in re.findall(rf"`((?:{prefixes})_\w+)`", text) if n not in DATASETS and n not in MODELS}
    recipe_like |= set(re.findall(r"recipes/(\w+)\.toml", text))
    assert {"digits_quick", "cifar100_resnet18", "dvs_cifar10_vggsnn"} <= recipe_like
    assert recipe_like - set(bundled_recipes()) == set()


def choices_in_method_md(key: str) -> set[str]:
    """The backquoted words of ``key``'s row in docs/method.md's key tables."""
    (row,) = re.findall(rf"^\| `{re.escape(key)}` \|(.*)$", METHOD, re.M)
    return set(re.findall(r"`(\w+)`", row))


def table_after(markdown: str, header: str) -> list[str]:
    """First cells of the Markdown table whose header row starts with ``header``."""
    table = markdown.split(header, 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.M)


def test_method_md_lists_every_backend_and_family():
    assert choices_in_method_md("neuron.backend") == backends() | {"auto"}
    assert choices_in_method_md("surrogate.family") == surrogate_families()
    assert set(table_after(METHOD, "| family |")) == surrogate_families()
