import pytest

from seq2seq.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    preset_names,
    save_config,
)


def test_yaml_round_trip(tmp_path):
    config = config_from_dict({"model": {"cell": "gru1", "hidden_size": 32}, "train": {"lr": 1}})
    save_config(config, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == config
    assert again.train.lr == 1.0 and isinstance(again.train.lr, float)
    assert config_to_dict(again)["model"]["cell"] == "gru1"


def test_defaults_when_empty():
    assert config_from_dict({}) == Config()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"model": {"cel": "gru"}}, "unknown key model.cel; allowed: encoder, decoder, cell"),
        ({"modle": {}}, "unknown section 'modle'"),
        ({"model": {"cell": "rnn"}}, "model.cell: 'rnn' is not one of gru_reset_after, gru,"),
        ({"model": {"hidden_size": 0}}, "model.hidden_size: 0 must be > 0"),
        ({"model": {"hidden_size": "big"}}, "model.hidden_size: expected int, got 'big'"),
        ({"train": {"dropout": 0.1}}, "unknown key train.dropout"),
        ({"model": {"dropout": 1.5}}, "model.dropout: 1.5 must be <= 0.99"),
        ({"model": {"maxout_size": 100}}, "needs model.maxout_size == model.emb_size"),
    ],
)
def test_errors_name_the_key_and_allowed_values(raw, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_overrides_parse_yaml_scalars_and_validate(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  cell: gru\n")
    config = load_config(path, ["train.lr=0.5", "model.bidirectional=false", "data.src=fr"])
    assert config.train.lr == 0.5 and config.model.bidirectional is False
    assert config.data.src == "fr" and config.model.cell == "gru"
    assert load_config(path, ["train.lr=1e-4"]).train.lr == 1e-4  # a string to YAML 1.1
    with pytest.raises(ConfigError, match="expected float"):
        load_config(path, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="unknown key train.learning_rate"):
        load_config(path, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(path, ["lr=1"])


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    load_config(name)


def test_missing_file_lists_presets():
    with pytest.raises(ConfigError, match="no such file or preset; presets: .*tiny"):
        load_config("nope.yaml")


@pytest.mark.parametrize(
    "text, match",
    [
        ("train: 5\n", "train: expected a mapping"),
        ("- data\n- model\n", "expected a mapping of sections"),
        ("train:\n  lr: .nan\n", "train.lr: nan is not a finite number"),
        ("train:\n  lr: .inf\n", "train.lr: inf is not a finite number"),
        ("train: {lr: [\n", "not valid YAML"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_set_with_bad_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("tiny", ["train.lr=[1, 2"])


def test_devices_that_cannot_run_here_are_refused():
    from seq2seq.config import check_device

    assert check_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="not a torch device"):
        check_device("tpu9")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check_device("cuda")
