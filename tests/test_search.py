"""`tinymnist search`: budgets reject before training, outputs, a continued study, a killed worker's
trial retried, the test set never read, one-line errors, and a study shared over PostgreSQL.

Small on purpose: 256-512 training images, 200-500 validation images, 1 epoch, 2-4 trials."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="tinymnist[search] is not installed")

from helpers import run_cli  # noqa: E402

from tinymnist import cli  # noqa: E402
from tinymnist.errors import UserError  # noqa: E402
from tinymnist.search import space  # noqa: E402
from tinymnist.search.budgets import budget_reason, check_reachable, constraints  # noqa: E402
from tinymnist.search.config import SearchConfig, study_signature  # noqa: E402
from tinymnist.search.storage import open_storage, storage_url  # noqa: E402
from tinymnist.search.study import baseline_params, prepare, run_search  # noqa: E402
from tinymnist.search.trials import trial_status  # noqa: E402

SMALL = dict(epochs=1, train_subset=256, val_size=200, final_seeds=0, top_k=1)


def small(tmp_path: Path, **changes) -> SearchConfig:
    return SearchConfig(**{**SMALL, "out": str(tmp_path / "search"), **changes})


def study_of(cfg: SearchConfig):
    return optuna.load_study(study_name=cfg.study, storage=storage_url(cfg))


def trained(study) -> list:
    return [t for t in study.get_trials() if trial_status(t) in ("complete", "pruned", "diverged")]


# ---------------------------------------------------------------------------------------------
# The space and its costs


def test_sampled_plans_follow_the_grammar():
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(30):
        trial = study.ask()
        candidate = space.sample(trial)
        tokens = candidate.plan.split()
        stages = " ".join(tokens).split(" M ")
        assert 2 <= len(stages) <= 3 and all(1 <= len(s.split()) <= 3 for s in stages)
        assert tokens[0][0] == "c" and all(t[0] in "cs" and 4 <= int(t[1:]) <= 40 for t in tokens if t != "M")
        assert space.candidate_from_params(trial.params) == candidate  # a finished trial rebuilds its candidate
        study.tell(trial, 0.0)


def test_costs_are_computed_before_training():
    cost = space.measure("c8 s16 s16 M s20 s20 s20 M s32 s28")  # the default model
    assert (cost.params, cost.macs) == (4910, 957068)
    # The static RAM `export --format c` sizes: arena 12,544 (28x28x16) + row ring 1,536 (three planar
    # rows of 16 channels x 32 bytes) + depthwise row 928 (29 pixels x 16 channels, int16).
    assert cost.ram_bytes == 12544 + 1536 + 928


def test_budgets_no_plan_can_meet_are_refused():
    for changes, flag in (({"max_params": 50}, "--max-params 50"), ({"max_macs": 1000}, "--max-macs 1000"),
                          ({"max_ram_kb": 1}, "--max-ram-kb 1")):
        with pytest.raises(UserError, match=flag):
            check_reachable(SearchConfig(**changes))
    check_reachable(SearchConfig(max_params=200))  # "c4 M s4" has 154


# ---------------------------------------------------------------------------------------------
# A microcontroller target: the instruction budget and the space it widens

DEFAULT_PLAN = "c8 s16 s16 M s20 s20 s20 M s32 s28"


class FakeTrial:
    def __init__(self, **attrs):
        self.user_attrs = attrs


def test_the_instruction_budget_is_predicted_and_enforced_without_a_compiler():
    cfg = SearchConfig(target="cortex-m4", max_instructions=1_000_000)
    assert cfg.build == ("cortex-m4", "-O2") and SearchConfig(target="cortex-m0").build == ("cortex-m0", "-Os")
    default = space.measure(DEFAULT_PLAN, cfg.build)
    assert 1_500_000 < default.instructions < 1_660_000  # QEMU counts 1,577,680 (benchmarks/mcu.py)
    assert budget_reason(default, cfg) == f"{default.instructions:,} predicted cortex-m4 -O2 instructions > 1,000,000"
    cheap = space.measure("M c8 s16 M s24 M s32", cfg.build)
    assert cheap.instructions < 300_000 and budget_reason(cheap, cfg) is None
    assert space.measure(DEFAULT_PLAN).instructions is None  # no target: nothing predicted
    over = constraints(cfg, FakeTrial(params=4910, macs=957068, ram_kb=14.7, instructions=default.instructions))
    assert len(over) == 4 and over[3] == pytest.approx(default.instructions / 1_000_000 - 1) and over[3] > 0
    assert constraints(cfg, FakeTrial(params=500, macs=1, ram_kb=1.0, instructions=200_000))[3] < 0
    assert len(constraints(SearchConfig(), FakeTrial(params=500, macs=1, ram_kb=1.0))) == 3  # studies made before
    with pytest.raises(UserError, match="--max-instructions 1000: the smallest, 'M c4 M s4', has"):
        check_reachable(SearchConfig(target="cortex-m4", max_instructions=1000))
    check_reachable(SearchConfig(target="cortex-m0", max_instructions=400_000))  # an input-pooled plan fits


def test_a_microcontroller_target_widens_the_space():
    sampler = optuna.samplers.RandomSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    pooled = strided = linear = four = 0
    for _ in range(40):
        trial = study.ask()
        candidate = space.sample(trial, mcu=True)
        plan, head = space.split_head(candidate.plan)
        linear += head != "gap"  # a linear head (PlanNet head="fc"), written " +fc" after the plan
        four += head == "fc4"  # its weights trained for 4 bits, written " +fc4"
        assert space.model_args(candidate.plan) == {"plan": plan, "dw_bn": False, **({"head": head} if head != "gap" else {})}
        tokens = plan.split()
        pooled += tokens[0] == "M"
        strided += tokens[0][0] == "d"  # a stride-2 first conv, only without the input pool
        convs = [t for t in tokens if t != "M"]
        assert convs[0][0] in "cd" and all(t[0] in "cs" for t in convs[1:]) and all(int(t[1:]) % 4 == 0 for t in convs)
        assert space.candidate_from_params(trial.params, mcu=True) == candidate
        assert space.plan_params(candidate.plan, mcu=True) == {k: v for k, v in trial.params.items()
                                                                if k in space.plan_params(candidate.plan, mcu=True)}
        study.tell(trial, 0.0)
    assert 5 < pooled < 35 and 3 < strided < 25 and 8 < linear < 32 and 2 < four < linear - 2
    assert space.candidate_from_params(space.default_params("network", mcu=True), "network", mcu=True).plan == DEFAULT_PLAN
    with pytest.raises(ValueError):
        space.plan_params("c6 s16 M s20", mcu=True)  # 6 channels: not in fours
    with pytest.raises(ValueError):
        space.plan_params("M c8 s16 M s20")  # no input pool without a target
    with pytest.raises(ValueError):
        space.plan_params("d8 s16 M s20")  # nor a stride-2 first conv
    assert space.plan_params("d8 s16 M s20", mcu=True)["stride2"]
    assert space.plan_params("d8 s16 M s20 +fc", mcu=True)["head"] == "fc"
    assert space.plan_params("d8 s16 M s20 +fc4", mcu=True) == {**space.plan_params("d8 s16 M s20 +fc", mcu=True),
                                                                "head_bits": 4}
    assert space.build_model("d8 s16 M s20 +fc4").net[-1].weight_bits == 4
    with pytest.raises(ValueError):
        space.plan_params("c8 s16 M s20 +fc")  # no linear head without a target
    assert space.build_model("d8 s16 M s20 +fc").net[-1].in_features == 20 * 7 * 7
    # Studies without a target keep the signature they had (they continue); a target is another search.
    plain = study_signature(SearchConfig())
    assert "input_pool" not in plain["space"] and not {"target", "max_instructions"} & set(plain["objective"])
    mcu = study_signature(SearchConfig(target="cortex-m4", max_instructions=10**6))
    assert mcu["objective"]["target"] == "cortex-m4 -O2" and mcu["space"]["input_pool"] == [False, True]
    assert space.describe(mcu=True)["widths"] == [4, 40, 4] and space.describe(mcu=True)["input_pool"] == [False, True]
    assert space.describe(mcu=True)["first_stride"] == [1, 2] and "first_stride" not in space.describe()
    assert space.describe(mcu=True)["head"] == ["gap", "fc"] and "head" not in space.describe()
    assert space.describe(mcu=True)["head_bits"] == [8, 4]


@pytest.mark.parametrize("args, message", [
    (("--max-instructions", "0", "--target", "cortex-m4"), "--max-instructions must be an integer >= 1, not 0"),
    (("--max-instructions", "100000"), "--max-instructions must come with a target: the microcontroller"),
    (("--target", "cortex-m7"), "--target must be one of cortex-m4, cortex-m0, not 'cortex-m7'"),
    (("--target", "cortex-m0", "--opt", "-O3"), "--opt must be one of -O2, -Os, not '-O3'"),
    (("--opt=-Os",), "--opt must come with a target"),
])
def test_bad_instruction_budget_flags_are_one_line(args, message, tmp_path, capsys):
    assert message in one_line_error(capsys, *args, "--out", tmp_path / "a")


@pytest.mark.slow
def test_a_microcontroller_search_stays_under_its_instruction_budget(tmp_path, data_dir, monkeypatch):
    from tinymnist.export.c import toolchain

    monkeypatch.setenv("TINYMNIST_DATA", str(data_dir))
    cfg = small(tmp_path, trials=2, max_params=6000, target="cortex-m4", max_instructions=400_000)
    result = run_search(cfg)
    trials = study_of(cfg).get_trials()
    assert all(t.user_attrs["instructions"] <= 400_000 for t in trained(study_of(cfg)))
    assert any("predicted cortex-m4 -O2 instructions > 400,000" in t.user_attrs.get("reason", "") for t in trials)
    winner = result.winner
    assert winner is not None and winner.instructions <= 400_000
    if toolchain.have(toolchain.ARM_CC, toolchain.QEMU):  # the finalists counted under QEMU
        assert abs(winner.instructions / winner.measured_instructions - 1) < 0.03
    else:
        assert "not installed" in winner.measured_note
    text = (result.out / "search.md").read_text()
    assert "instructions per inference on cortex-m4 -O2: at most 400,000" in text and "| QEMU |" in text
    assert "instructions" in (result.out / "trials.csv").read_text().splitlines()[0]


def test_both_optimizations_of_each_target_have_a_cost_model(tmp_path):
    for target in space.TARGETS:
        for opt in ("-O2", "-Os", "Os"):
            args = cli.build_parser().parse_args(cli._joined_opt(["search", "--target", target, "--opt", opt]))
            assert cli._search_config(args).build == (target, "-" + opt.strip("-"))


# ---------------------------------------------------------------------------------------------
# Searching


@pytest.mark.slow
def test_over_budget_candidates_are_rejected_before_training_and_the_test_set_is_never_read(tmp_path, monkeypatch, data_dir):
    import tinymnist.data.mnist
    import tinymnist.training.trainer

    monkeypatch.setenv("TINYMNIST_DATA", str(data_dir))
    loaded, trained_plans = [], []
    real_load_file, real_train_run = tinymnist.data.mnist.load_file, tinymnist.training.trainer.train_run

    def load_file(key, *args, **kwargs):
        loaded.append(key)
        return real_load_file(key, *args, **kwargs)

    def train_run(cfg, data, *args, **kwargs):
        trained_plans.append(cfg.model_args["plan"])
        assert len(data.test_images) == 1 and (data.test_images == data.train_images[-1:]).all()  # a validation image
        return real_train_run(cfg, data, *args, **kwargs)

    monkeypatch.setattr(tinymnist.data.mnist, "load_file", load_file)
    monkeypatch.setattr(tinymnist.data.mnist, "load_mnist", lambda *a, **k: pytest.fail("the search loaded the test set"))
    monkeypatch.setattr(tinymnist.training.trainer, "train_run", train_run)
    cfg = small(tmp_path, max_params=1500, trials=2)
    result = run_search(cfg)

    assert set(loaded) == {"train-images", "train-labels"}
    trials = study_of(cfg).get_trials()
    rejected = [t for t in trials if trial_status(t) == "rejected"]
    assert rejected, "the first random candidates of this seed include networks over 1,500 parameters"
    for t in rejected:
        assert t.user_attrs["params"] > 1500 and t.user_attrs["reason"].startswith("over budget")
        assert not t.intermediate_values and t.user_attrs["plan"] not in trained_plans
    assert len(trained_plans) == 2 and all(space.measure(p).params <= 1500 for p in trained_plans)
    for t in trials:  # nothing about a test split was recorded
        assert not any("test" in key for key in t.user_attrs)
    header = (tmp_path / "search" / "trials.csv").read_text().splitlines()[0]
    assert "test" not in header and "val_accuracy" in header
    assert result.winner is not None and result.winner.params <= 1500
    assert "never read" in (tmp_path / "search" / "search.md").read_text()


@pytest.mark.slow
def test_a_continued_search_only_runs_the_missing_trials(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("TINYMNIST_DATA", str(data_dir))
    run_search(small(tmp_path, trials=2))
    first = [t.number for t in trained(study_of(small(tmp_path)))]
    assert len(first) == 2
    run_search(small(tmp_path, trials=3))
    numbers = [t.number for t in study_of(small(tmp_path)).get_trials()]
    after = [t.number for t in trained(study_of(small(tmp_path)))]
    assert len(after) == 3 and after[:2] == first  # one new trial; the old ones untouched
    assert len(numbers) == len(set(numbers))
    run_search(small(tmp_path, trials=3))  # already complete: nothing new
    assert len(study_of(small(tmp_path)).get_trials()) == len(numbers)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_killed_workers_trial_is_failed_and_retried(tmp_path, data_dir, monkeypatch):
    """A trial left RUNNING by a dead process (simulated: asked, sampled, one heartbeat, no process)
    turns FAIL once its heartbeat is 3 intervals old, and is re-run with the same parameters."""
    monkeypatch.setenv("TINYMNIST_DATA", str(data_dir))
    cfg = small(tmp_path, trials=1, heartbeat=1, baseline=False)
    _, storage, study = prepare(cfg)
    params = {"stages": 2, "convs0": 1, "width0_0": 8, "convs1": 1, "width1_0": 8, "sep1_0": True, "lr": 0.1,
              "warmup": 0.2, "weight_decay": 1e-4, "label_smoothing": 0.1, "augment": 1.0, "clean_epochs": 1,
              "batch_size": 64}
    study.enqueue_trial(params)
    orphan = study.ask()
    space.sample(orphan)
    orphan.set_user_attr("status", "training")
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(3.5)  # grace period: 3 heartbeats

    run_search(cfg)
    trials = study_of(cfg).get_trials()
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retries) == 1 and trial_status(retries[0]) == "complete" and retries[0].params == params
    assert len(trained(study_of(cfg))) == 1


@pytest.mark.slow
def test_cli_writes_the_outputs_and_best_json_trains(tmp_path, data_dir):
    out = tmp_path / "search"
    env = {**os.environ, "TINYMNIST_DATA": str(data_dir)}
    r = run_cli("search", "--trials", "3", "--epochs", "1", "--subset", "256", "--val-size", "200", "--out", out,
                "--final-seeds", "2", "--top-k", "2", env=env)
    assert r.returncode == 0, r.stderr
    assert "winner: trial" in r.stdout and "train it: tinymnist train --config" in r.stdout
    for name in ("trials.csv", "best.json", "pareto.png", "search.md", "study.db"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best.json").read_text())
    assert best["epochs"] == 10 and best["val_size"] == 0 and best["train_subset"] == 0 and best["model"] == "separable"
    report = (out / "search.md").read_text()
    assert "fresh seeds" in report and "The choice rests on 3 trained trials and 2 fresh seeds" in report
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) - 1 == len(study_of(SearchConfig(out=str(out))).get_trials())

    r = run_cli("train", "--config", out / "best.json", "--epochs", "1", "--subset", "256", "--test-subset", "100",
                "--out", tmp_path / "run", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_args"] == best["model_args"]


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 1, nothing lost


def one_line_error(capsys, *argv) -> str:
    assert cli.main(["search", *map(str, argv)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinymnist: error: "), captured.err
    return lines[0]


def test_bad_input_is_one_line(tmp_path, capsys):
    assert "--max-params 50" in one_line_error(capsys, "--max-params", "50", "--out", tmp_path / "a")
    assert "--epochs must be" in one_line_error(capsys, "--epochs", "0", "--out", tmp_path / "a")
    assert "cannot use the study storage" in one_line_error(capsys, "--storage", "not a url", "--out", tmp_path / "a")
    assert "cannot use the study storage" in one_line_error(capsys, "--storage", "sqlite:////no/such/dir/x.db",
                                                            "--out", tmp_path / "a")
    (tmp_path / "file").write_text("")
    assert "it is a file" in one_line_error(capsys, "--out", tmp_path / "file")
    assert "cannot write" in one_line_error(capsys, "--out", tmp_path / "file" / "sub")


def test_an_unreachable_server_is_one_line(tmp_path, capsys):
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (tinymnist[postgres])")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(capsys, "--storage", f"postgresql://nobody@127.0.0.1:{port}/none", "--out", tmp_path / "a")
    assert "cannot use the study storage postgresql://nobody@127.0.0.1" in line


def test_a_study_with_another_search_is_refused_and_kept(tmp_path, capsys):
    cfg = small(tmp_path)
    _, _, study = prepare(cfg)
    study.enqueue_trial({"stages": 2})
    before = (study.user_attrs, len(study.get_trials()))
    line = one_line_error(capsys, "--out", cfg.out, "--epochs", "2", "--subset", "256", "--val-size", "200")
    assert "was made with a different search (epochs 1 -> 2)" in line
    study = study_of(cfg)
    assert (study.user_attrs, len(study.get_trials())) == before


# ---------------------------------------------------------------------------------------------
# A study shared over PostgreSQL


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (initdb refuses root: run as the postgres user)."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (tinymnist[postgres])")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb / pg_ctl are neither on PATH nor in /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u, pwd)), None)
        if user is None or not shutil.which("runuser"):
            pytest.skip("running as root without a postgres/nobody user and runuser to start PostgreSQL")
        as_user = ["runuser", "-u", user, "--"]
    base = Path(tempfile.mkdtemp(prefix="tinymnist-pg-"))
    if as_user:
        shutil.chown(base, user=as_user[2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60)  # noqa: E731
    r = run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed: {r.stderr.strip()[-200:]}")
    r = run(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
            f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {r.stderr.strip()[-200:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return str(versions[-1]) if versions else None


def _has_user(name: str, pwd) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.slow
def test_two_processes_share_a_study_on_postgres(tmp_path, data_dir, postgres_url):
    """Two `tinymnist search` commands on one --storage (as two machines would), the first with two
    worker processes: every trial number once, the trained trials as asked (plus at most one per
    extra worker that started as the last one was claimed)."""
    env = {**os.environ, "TINYMNIST_DATA": str(data_dir)}
    args = ["search", "--storage", postgres_url, "--study", "shared", "--trials", "4", "--epochs", "1", "--subset", "256",
            "--val-size", "200", "--final-seeds", "0", "--top-k", "1", "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "tinymnist", *args, "--jobs", "2", "--out", str(tmp_path / "a")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = run_cli(*args, "--out", tmp_path / "b", env=env)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    study = optuna.load_study(study_name="shared", storage=open_storage(postgres_url, heartbeat=10))
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    assert 4 <= len(trained(study)) <= 6
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    for d in ("a", "b"):
        assert (tmp_path / d / "best.json").is_file()


# ---------------------------------------------------------------------------------------------
# The network-only space and the baseline trial


def test_the_default_model_and_recipe_are_a_point_of_both_spaces():
    from tinymnist.models.zoo import model_kwargs
    from tinymnist.training.config import TrainConfig

    full = space.candidate_from_params(space.default_params("full"), "full")
    assert full.plan == model_kwargs("separable")["plan"]
    assert TrainConfig(**space.recipe_fields(full.knobs)) == TrainConfig()  # every knob at its default
    network = space.candidate_from_params(space.default_params("network"), "network")
    assert network.plan == full.plan and network.knobs == {}
    with pytest.raises(ValueError):
        space.plan_params("c8 s16 M s50")  # wider than the space
    with pytest.raises(ValueError):
        space.plan_params("s8 s16 M s20")  # the first conv is always dense


def test_a_network_search_trains_the_default_recipe_and_starts_from_the_default_model(tmp_path, data_dir, monkeypatch):
    from tinymnist.training.config import TrainConfig

    monkeypatch.setenv("TINYMNIST_DATA", str(data_dir))
    cfg = small(tmp_path, trials=2, space="network")
    result = run_search(cfg)
    trials = study_of(cfg).get_trials()
    assert trials[0].user_attrs.get("baseline") is True
    assert trials[0].user_attrs["plan"] == "c8 s16 s16 M s20 s20 s20 M s32 s28"
    assert not any(k in t.params for t in trials for k in ("lr", "batch_size", "augment"))  # no recipe sampled
    assert result.best_config is not None
    skip = ("model", "model_args", "epochs")
    assert {k: v for k, v in vars(result.best_config).items() if k not in skip} == \
        {k: v for k, v in vars(TrainConfig()).items() if k not in skip}
    text = (result.out / "search.md").read_text()
    assert "## Baseline" in text and "the recipe is not searched" in text
    assert "True" in (result.out / "trials.csv").read_text().splitlines()[1]  # trial 0: baseline column
    with pytest.raises(UserError, match="different search"):  # the same study cannot be continued as "full"
        run_search(small(tmp_path, trials=3, space="full"))


def test_no_baseline_when_the_default_model_is_over_budget_or_declined(tmp_path):
    assert baseline_params(small(tmp_path, max_params=3000)) is None  # separable has 4,9xx
    assert baseline_params(small(tmp_path, baseline=False)) is None
    assert baseline_params(small(tmp_path))["width0_0"] == 8
