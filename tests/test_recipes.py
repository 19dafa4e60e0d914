"""Per-model training recipes: TrainConfig's defaults < the model's recipe < what the user sets (flags
given, keyword arguments passed, a --config file's fields), through the CLI, the API and --resume."""

import dataclasses
import json

import pytest

import tinymnist
from tinymnist import cli
from tinymnist.models import zoo
from tinymnist.models.zoo import model_names, model_recipe
from tinymnist.training.config import (
    TrainConfig,
    config_with,
    recipe_in_effect,
    recipe_of,
    recipe_problems,
)

RECIPE = {"lr": 0.05, "label_smoothing": 0.02, "rotate": 2.0, "scale": (0.9, 1.1)}
TINY = {"train_subset": 128, "test_subset": 100, "epochs": 1, "threads": 1, "engine": "eager"}


@pytest.fixture
def with_recipe(monkeypatch):
    """A model registered for this test only: the reference network with RECIPE."""
    entry = dataclasses.replace(zoo.model_entry("reference"), name="withrecipe", recipe=dict(RECIPE))
    monkeypatch.setitem(zoo._REGISTRY, "withrecipe", entry)
    return "withrecipe"


@pytest.mark.parametrize("name", model_names())
def test_every_registered_recipe_names_real_fields_and_is_a_valid_config(name):
    recipe = model_recipe(name)
    assert recipe_problems(recipe) == []
    cfg = TrainConfig.for_model(name)  # TrainConfig validates every value
    assert recipe_in_effect(cfg) == recipe_of(name)
    if not recipe:  # a model without a recipe trains exactly as before recipes existed
        assert cfg == TrainConfig(model=name)


def test_a_recipe_may_only_set_training_fields(monkeypatch):
    assert recipe_problems({"lr": 0.1, "nope": 1, "seed": 3}) == ["nope is not a TrainConfig field",
                                                                   "seed belongs to a run, not to a recipe"]
    entry = dataclasses.replace(zoo.model_entry("reference"), name="bad", recipe={"learning_rate": 0.1})
    monkeypatch.setitem(zoo._REGISTRY, "bad", entry)
    with pytest.raises(ValueError, match="recipe of model 'bad' is unusable: learning_rate is not a TrainConfig field"):
        TrainConfig.for_model("bad")


def test_precedence_defaults_then_recipe_then_what_the_user_sets(with_recipe):
    defaults = TrainConfig()
    cfg = config_with({}, {"model": with_recipe, "lr": 0.3})
    assert (cfg.lr, cfg.label_smoothing, cfg.rotate, cfg.scale) == (0.3, 0.02, 2.0, (0.9, 1.1))
    assert cfg.warmup == defaults.warmup and cfg.weight_decay == defaults.weight_decay
    assert recipe_in_effect(cfg) == {"label_smoothing": 0.02, "rotate": 2.0, "scale": (0.9, 1.1)}
    # A --config file's fields are the user's too; a complete one (a run's config.json) leaves the recipe no say.
    partial = config_with({"model": with_recipe, "rotate": 4.0}, {})
    assert (partial.rotate, partial.label_smoothing) == (4.0, 0.02)
    complete = dataclasses.asdict(TrainConfig(model=with_recipe))
    assert config_with(complete, {}) == TrainConfig(model=with_recipe)
    # Naming the model in the overrides picks its recipe, over a saved config of another model.
    assert config_with({}, {"model": with_recipe}).lr == 0.05
    assert config_with({}, {"model": with_recipe}, recipe=False) == TrainConfig(model=with_recipe)
    assert TrainConfig.for_model(with_recipe, seed=3) == dataclasses.replace(config_with({}, {"model": with_recipe}),
                                                                             seed=3)


def test_cli_train_takes_the_recipe_unless_a_flag_is_given_and_resume_keeps_it(with_recipe, tmp_path, data_dir,
                                                                                 capsys, monkeypatch):
    from tinymnist.training import trainer

    out = tmp_path / "run"
    flags = ["--data-dir", str(data_dir), "--subset", "128", "--test-subset", "100", "--threads", "1",
             "--engine", "eager", "--quiet"]
    save_epoch = trainer.save_epoch

    def save_then_stop(run, record):  # a Ctrl-C right after the first epoch is saved
        save_epoch(run, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_epoch", save_then_stop)
    assert cli.main(["train", "--model", with_recipe, "--epochs", "2", "--lr", "0.3", "--out", str(out), *flags]) == 130
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 0.3 and saved["label_smoothing"] == 0.02 and saved["scale"] == [0.9, 1.1]
    assert saved["warmup"] == TrainConfig().warmup
    # The recipe changing in between does not change the run: --resume continues from its config.json.
    monkeypatch.setattr(trainer, "save_epoch", save_epoch)
    monkeypatch.setitem(zoo._REGISTRY, with_recipe, dataclasses.replace(zoo.model_entry(with_recipe),
                                                                       recipe={"label_smoothing": 0.0}))
    assert cli.main(["train", "--resume", "--out", str(out), *flags]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text()) == saved
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_cli_train_says_which_recipe_values_it_takes(with_recipe, tmp_path, data_dir, capsys):
    args = ["train", "--model", with_recipe, "--epochs", "1", "--rotate", "1", "--out", str(tmp_path / "r"),
            "--data-dir", str(data_dir), "--subset", "128", "--test-subset", "100", "--threads", "1", "--engine", "eager"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("with its recipe: --lr 0.05 --label-smoothing 0.02 --scale 0.9 1.1"), first


def test_api_train_takes_the_recipe_under_the_keyword_arguments_passed(with_recipe, data_dir):
    run = tinymnist.train(model=with_recipe, lr=0.3, data_dir=data_dir, verbose=False, **TINY)
    assert (run.config.lr, run.config.label_smoothing, run.config.rotate) == (0.3, 0.02, 2.0)
    assert run.metrics["recipe"] == {"label_smoothing": 0.02, "rotate": 2.0, "scale": (0.9, 1.1)}
    from_dict = tinymnist.train({"model": with_recipe, **TINY}, data_dir=data_dir, verbose=False)
    assert from_dict.config.lr == 0.05
    # A TrainConfig is complete: taken as it is (TrainConfig.for_model gives one with the recipe).
    plain = tinymnist.train(TrainConfig(model=with_recipe, **TINY), data_dir=data_dir, verbose=False)
    assert plain.config.lr == TrainConfig().lr and "recipe" not in plain.metrics


def test_models_command_lists_recipes(with_recipe, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "withrecipe trains with its recipe: --lr 0.05 --label-smoothing 0.02 --rotate 2.0 --scale 0.9 1.1" in out
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[with_recipe]["recipe"] == {**RECIPE, "scale": [0.9, 1.1]} and rows["reference"]["recipe"] == {}


def test_a_switch_a_recipe_turns_off_can_be_turned_back_on(monkeypatch):
    entry = dataclasses.replace(zoo.model_entry("reference"), name="plain", recipe={"augment": False, "weight_decay": 0.0})
    monkeypatch.setitem(zoo._REGISTRY, "plain", entry)
    parser = cli.build_parser()
    assert parser.parse_args(["train"]).augment is None  # left out: the recipe's value applies
    assert cli._recipe_flags(model_recipe("plain")) == "--no-augment --weight-decay 0.0"
    given = parser.parse_args(["train", "--model", "plain", "--augment"])
    overrides = {name: getattr(given, name) for name in ("model", "augment")}
    assert config_with({}, overrides).augment is True and config_with({}, overrides).weight_decay == 0.0
    assert config_with({}, {"model": "plain"}).augment is False
