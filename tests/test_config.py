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
