import pytest

from mlmkit.config import parse_override, preset_names
from mlmkit.families import resolve_config
from mlmkit.errors import ConfigError


def test_presets_resolve_and_overrides_apply():
    assert {"scratch-tiny", "adapt"} <= set(preset_names())
    cfg = resolve_config("scratch-tiny", overrides=["optim.lr=3e-4", "train.batch_size=8", "masking.whole_word=true"])
    assert cfg.optim.lr == 3e-4 and cfg.train.batch_size == 8 and cfg.masking.whole_word is True
    assert cfg.model.arch == "bert" and cfg.model.size == "tiny"
    assert resolve_config("adapt").model.init_from == "distilbert-base-uncased"


def test_config_file_is_merged_between_preset_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 0.01\ntrain:\n  seed: 7\n")
    cfg = resolve_config("scratch-tiny", str(f), ["train.seed=9"])
    assert cfg.optim.lr == 0.01 and cfg.train.seed == 9


@pytest.mark.parametrize("override, needle", [
    ("optim.lrr=1", "optim.lrr"),
    ("optimizer.lr=1", "optimizer"),
    ("train.batch_size=abc", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("data.mode=sentences", "data.mode"),
    ("masking.rate=1.5", "masking.rate"),
    ("train.precision=fp8", "train.precision"),
    ("optim.betas=[0.9, 1.0]", "optim.betas"),  # a list: not among the numbers walked below
    ("optim.betas=[-0.1, 0.98]", "optim.betas"),
])
def test_bad_keys_and_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        resolve_config("scratch-tiny", overrides=[override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*scratch-tiny"):
        resolve_config("nope")


def test_invalid_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml:"):
        resolve_config(config_file=str(f))


def test_parse_override_types():
    assert parse_override("a.b=2") == {"a": {"b": 2}}
    assert parse_override("a=[x, y]") == {"a": ["x", "y"]}
    with pytest.raises(ConfigError):
        parse_override("novalue")


# ------------------------------------------------------------------ bounds of every number
# Every int/float field of both families' configs refuses an absurd value at load time, with a
# ConfigError naming its dotted key: -1 (or -0.1) everywhere, 0 unless listed below, and 1.5 for
# shares. A field missing from these checks fails later (log_every=0: a ZeroDivisionError after
# the data is prepared) or silently trains something else.

# Fields where 0 is a legitimate setting, and what it means.
ZERO_OK = {
    "data.validation_fraction": "nothing held out (a separate data.validation, or no evaluation)",
    "data.max_eval_samples": "no validation examples",
    "train.seed": "a seed like any other",
    "train.data_workers": "batches built in the main process",
    "train.save_every": "no periodic checkpoints (still one at the end and on a signal)",
    "train.show_samples": "no examples logged",
    "optim.weight_decay": "no weight decay",
    "optim.warmup_steps": "no warmup",
    "optim.warmup_ratio": "no warmup",
    "optim.min_lr_ratio": "the LR decays to zero",
    "optim.decay_ratio": "wsd without its decay: the peak LR to the end",
    "optim.grad_clip": "no clipping",
    "masking.mask_fraction": "selected units are left as they are (or randomised)",
    "masking.random_fraction": "no random replacements",
    "model.dropout": "no dropout",
    "model.ngram_buckets": "no n-gram embeddings",
    "model.ngram_dim": "n-gram rows as wide as the encoder",
    "model.head_ngram_buckets": "no n-gram memory",
    "model.head_ngram_dropout": "no memory dropout",
    "model.head_ngram_dim": "memory rows as wide as the head",
    "model.head_ngram_dense": "no dense memory loss",
    "model.head_ngram_joint": "no joint contexts",
    "model.head_ngram_count_buckets": "as many count rows as model.head_ngram_buckets",
    "model.cloze_windows": "cloze towers train on the masked spans",
}
# Fields where a negative number is legitimate: none today (a new one needs a reason here).
NEGATIVE_OK: dict[str, str] = {}
SHARE_WORDS = ("fraction", "ratio", "rate", "dropout")  # float fields that are shares of something


def _numeric_fields(cls, prefix=""):
    """(dotted key, int or float) of every number field (Optional too) of config dataclass `cls`."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
            continue
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
        if args in ([int], [float]):  # bool is not int here: `args` holds the type itself
            yield f"{prefix}{f.name}", args[0]


def _absurd_values(key, tp):
    values = [] if key in NEGATIVE_OK else [-1 if tp is int else -0.1]
    if key not in ZERO_OK:
        values.append(0)
    if tp is float and any(w in key.rsplit(".", 1)[1] for w in SHARE_WORDS):
        values.append(1.5)
    return values


def _family_presets():
    from mlmkit.config import load_preset
    from mlmkit.families import DEFAULT, FAMILIES

    return [(name, p) for name in FAMILIES for p in [None, *preset_names()]
            if (load_preset(p).get("task", DEFAULT) if p else name) == name]


@pytest.mark.parametrize("family_name, preset", _family_presets())
def test_every_number_in_the_config_refuses_absurd_values_naming_its_key(family_name, preset):
    from mlmkit.families import FAMILIES

    fields = list(_numeric_fields(FAMILIES[family_name].config_class))
    assert {"train.log_every", "optim.eps", "data.max_length", "masking.rate"} <= {k for k, _ in fields}
    accepted, unnamed = [], []
    for key, tp in fields:
        for value in _absurd_values(key, tp):
            try:
                resolve_config(preset, None, [f"task={family_name}", f"{key}={value}"])
                accepted.append(f"{key}={value}")
            except ConfigError as e:
                if f"'{key}'" not in str(e) or "\n" in str(e):
                    unnamed.append(f"{key}={value}: {e}")
    assert not accepted, f"absurd values accepted: {accepted}"
    assert not unnamed, f"errors that do not name their key: {unnamed}"


@pytest.mark.parametrize("family_name", ["token", "char"])
def test_the_zero_allow_list_holds_only_fields_where_zero_is_accepted(family_name):
    from mlmkit.families import FAMILIES

    keys = [k for k, _ in _numeric_fields(FAMILIES[family_name].config_class) if k in ZERO_OK]
    assert keys
    for key in keys:
        resolve_config(None, None, [f"task={family_name}", f"{key}=0"])  # raises if refused


# ------------------------------------------------------------------ the key reference (mlmkit config)
def _leaf_keys(cls, prefix=""):
    """Every field of dataclass `cls` and of the dataclasses in it, dotted (walked here, apart
    from the reference's own walk)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= _leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


@pytest.mark.parametrize("family_name", ["token", "char"])
def test_every_config_key_is_in_the_reference_with_a_meaning(family_name):
    from mlmkit.config_keys import config_reference
    from mlmkit.families import FAMILIES

    docs = config_reference(family_name)
    assert {d.key for d in docs} == _leaf_keys(FAMILIES[family_name].config_class)
    assert len(docs) == len({d.key for d in docs})
    undocumented = [d.key for d in docs if not d.meaning.strip()]
    assert not undocumented, f"fields without a comment saying what they mean: {undocumented}"
    assert all(d.type and d.value == d.default for d in docs)


def test_the_meaning_is_the_comment_above_and_beside_a_field_or_its_base_class():
    from dataclasses import dataclass

    from mlmkit.config_keys import config_reference, field_meaning

    @dataclass
    class Base:
        a: int = 1  # the base's a
        b: int = 2  # the base's b

    @dataclass
    class Child(Base):
        # a comment block that explains nothing below it

        # how many widgets: the comment just above,
        # on two lines
        a: int = 3  # and the one beside it
        c: str = "x"

    assert field_meaning(Child, "a") == "how many widgets: the comment just above, on two lines and the one beside it"
    assert field_meaning(Child, "b") == "the base's b"  # not in the child's source: the base's
    assert field_meaning(Child, "c") == ""
    docs = {d.key: d for d in config_reference("char")}
    assert docs["model.size"].meaning.startswith("scratch encoder size")  # the family's own comment
    assert docs["data.hf_split"].meaning == "hub split"  # the shared section's (config.DataSection)
    assert "init_from" not in docs["model.downsampling_rate"].meaning  # a block apart is no field's


def test_the_reference_shows_a_presets_values_and_the_defaults_they_replace(capsys, monkeypatch):
    from cli_runner import run_cli
    from mlmkit.config_keys import config_reference

    docs = {d.key: d for d in config_reference(preset="domains-tiny")}  # a char preset: the char keys
    assert docs["task"].value == "char" and "model.ngram_buckets" in docs
    assert docs["train.max_minutes"].value == 10 and docs["train.max_minutes"].default is None
    assert docs["model.ngram_buckets"].value == 16384 and docs["model.ngram_buckets"].from_preset
    assert docs["train.seed"].value == 0 and not docs["train.seed"].from_preset
    code, out, err = run_cli(["config", "--preset", "scratch-tiny"], capsys, monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert any(l.startswith("train.max_minutes = 10.0 ") and l.endswith("[float | null] (default: null)") for l in lines)
    assert any(l.startswith("tokenizer.vocab_size = 8192 ") for l in lines)
    assert "    optimiser steps; None: epochs" in lines  # the meaning, under its key
    code, out, err = run_cli(["config", "optim.lr", "train", "--family", "char"], capsys, monkeypatch)
    keys = [l.split(" = ")[0] for l in out.splitlines() if " = " in l and not l.startswith(("#", " "))]
    assert code == 0 and keys[0] == "optim.lr" and keys[1:] and all(k.startswith("train.") for k in keys[1:])
    code, out, err = run_cli(["config", "--preset", "domains-tiny", "--family", "token"], capsys, monkeypatch)
    assert code == 2 and "preset 'domains-tiny' is a char preset, not token" in err
    code, out, err = run_cli(["config", "train.max_step"], capsys, monkeypatch)
    assert code == 2 and "unknown config key 'train.max_step' (did you mean 'train.max_steps'?)" in err


def test_the_markdown_references_hold_every_key_and_every_option():
    import typer.main

    from mlmkit.cli import app
    from mlmkit.config_keys import config_reference
    from mlmkit.reference import cli_reference_markdown, config_reference_markdown

    page = config_reference_markdown()  # what the docs site renders: every family
    for name in ("token", "char"):
        assert f"## The {name} family (`task: {name}`)" in page
        for d in config_reference(name):
            assert f"| `{d.key}` |" in page and d.meaning.replace("|", "\\|") in page
    assert "| `train.max_minutes` | float \\| null | `10.0` (built-in: `null`) |" in config_reference_markdown(
        preset="scratch-tiny")
    page = cli_reference_markdown()
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        assert f"## `mlmkit {name}`" in page
        for p in cmd.params:
            if p.param_type_name == "option":
                assert f"`{p.opts[0]}`" in page, (name, p.opts)
    assert "| `--epochs` | `<float>` | `3.0` |" in page and "| `--from-scratch` |  | off |" in page


@pytest.mark.parametrize("override, message", [
    ("train.max_step=3", "unknown config key 'train.max_step' (did you mean 'train.max_steps'?)"),
    ("trian.max_steps=3", "unknown config key 'trian.max_steps' (did you mean 'train.max_steps'?)"),
    ("data.max_lenght=64", "unknown config key 'data.max_lenght' (did you mean 'data.max_length'?)"),
    ("optim.max_steps=3", "unknown config key 'optim.max_steps' (did you mean 'train.max_steps'?)"),
    # nothing close: the keys known there, as before
    ("optim.learning_rate=0.1", "unknown config key 'optim.learning_rate' (known keys here: betas,"),
    ("foo.bar=1", "unknown config key 'foo' (known keys here: data, masking, model, optim, task, tokenizer, train)"),
])
def test_an_unknown_key_names_the_closest_valid_one(override, message):
    with pytest.raises(ConfigError) as e:
        resolve_config("scratch-tiny", overrides=[override])
    assert str(e.value).startswith(message), str(e.value)


def test_an_unknown_key_in_a_config_file_names_the_closest_valid_one(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  warmup_step: 10\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.warmup_step' \(did you mean 'optim.warmup_steps'\?\)"):
        resolve_config("scratch-tiny", str(f))
