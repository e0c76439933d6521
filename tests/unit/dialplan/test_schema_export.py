"""`ivr schema`: the committed dialplans/dialplan.schema.json is its output, and editors can trust it: it is
valid draft 2020-12, describes every key, and accepts every bundled dialplan as an editor's YAML parser reads
it (shorthands included) while rejecting what the loader rejects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ivr.cli import main
from ivr.dialplan.schema import SCHEMA_ID, json_schema, json_schema_text

ROOT = Path(__file__).parents[3]
COMMITTED = ROOT / "dialplans" / "dialplan.schema.json"
BUNDLED = sorted(p for p in (ROOT / "dialplans").glob("*.yaml") if not p.name.endswith(".test.yaml"))
MODELINE = "# yaml-language-server: $schema=./dialplan.schema.json"


def test_the_committed_schema_is_what_ivr_schema_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == json_schema_text()
    assert COMMITTED.read_text(encoding="utf-8") == printed, "regenerate: ivr schema --output " + str(
        COMMITTED.relative_to(ROOT)
    )


def test_ivr_schema_output_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", "schema", "--output", str(out)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "")
    assert json.loads(out.read_text(encoding="utf-8")) == json_schema()


def test_schema_is_draft_2020_12_with_an_id_and_a_title() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (schema["$id"], SCHEMA_ID) == ("urn:ivr:dialplan", "urn:ivr:dialplan")
    assert schema["title"] == "Dialplan" and schema["description"]


def test_every_model_and_every_key_has_a_description() -> None:
    schema = json_schema()
    models = {"Dialplan": schema, **schema["$defs"]}
    undescribed = [
        f"{model}.{key}" if key else model
        for model, body in models.items()
        for key in ("", *body.get("properties", {}))
        if not (body if not key else body["properties"][key]).get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_dialplan_names_the_schema_and_validates_against_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(yaml.safe_load(text)))
    assert [e.message for e in errors] == []


def step_with(**keys: Any) -> dict[str, Any]:
    step = {
        "routes": [{"goto": "end", "say": "상담원"}],
        "no_input": {"goto": "end"},
        "no_match": {"goto": "end"},
    }
    plan = {"name": "t", "start": "menu", "steps": {"menu": {**step, **keys}, "end": {"hangup": True}}}
    return plan


# What an editor should accept (the loader's shorthands, as YAML 1.2 types them) and reject.
ACCEPTED = [
    step_with(listen=True),
    step_with(routes=[{"goto": "end", "dtmf": 0}]),
    step_with(routes=[{"goto": "end", "dtmf": "#"}]),
    step_with(routes=[{"goto": "end", "emotion": ["irritado", "enojado"]}]),
    step_with(routes=[{"goto": "end", "emotion": {"group": "negativo_ativado", "min": 0.6}}]),
    step_with(listen={"language": "pt-BR", "secondary": {"vendor": "cpqd", "language": "pt-BR"}}),
]
REJECTED = [
    step_with(rotues=[]),
    step_with(routes=[{"goto": "end", "dtmf": 12}]),
    step_with(routes=[{"goto": "end", "dtmf": "12"}]),
    step_with(routes=[{"goto": "end", "emotion": ["irritada"]}]),
    step_with(listen={"timeout": -1}),
    step_with(listen={"vendor": "mediazn"}),
    step_with(listen={"language": "pt BR"}),
]


@pytest.mark.parametrize("plan", ACCEPTED)
def test_the_schema_accepts_the_shorthands(plan: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(json_schema()).validate(plan)


@pytest.mark.parametrize("plan", REJECTED)
def test_the_schema_rejects_what_the_loader_rejects(plan: dict[str, Any]) -> None:
    assert not jsonschema.Draft202012Validator(json_schema()).is_valid(plan)
