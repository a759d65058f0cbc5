"""The learning benchmark runs end to end and reports every figure README's learning table needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_learning_benchmark_reports_each_rung(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    output = tmp_path / "learning.json"
    learning.main(["--seeds", "0", "--rungs", "cnn", "grefel", "--num_epochs", "1", "--output", str(output)])
    report = json.loads(output.read_text())
    rows = {row["rung"]: row for row in report["rows"]}
    assert set(rows) == {"cnn", "grefel"} and report["recipe"]["num_epochs"] == 1
    for row in rows.values():
        assert row["steps"] == 40 and len(row["history"]) == 1  # 1,280 images / batch 32, evaluated once an epoch
        assert 0.0 <= row["min_recall"] <= row["accuracy"] <= 1.0
    assert 0.0 <= rows["grefel"]["corrected_accuracy"] <= 1.0
    assert report["summary"]["grefel (1 epoch)"]["seeds"] == 1  # summarised apart from the recipe's epochs


@pytest.mark.slow
def test_plateau_rung_logs_a_loss_curve(monkeypatch):
    """The `paper` rung's loop (run here on the tiny network, as `paper_control`) logs what README shows."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    row = learning.train_paper(0, dict(learning.RECIPES["synthetic"]), steps=20, batch_size=8, preset="tiny")
    assert row["rung"] == "paper_control"
    assert [point["step"] for point in row["loss_curve"]] == [10, 20]
    assert all(point["classification_loss"] > 0 and 0 <= point["batch_accuracy"] <= 1 for point in row["loss_curve"])
    # Twenty steps into training the SE gate is still near its initial 0.5 and the embedding varies between images.
    assert all(0.3 < point["se_gate_mean"] < 0.7 and point["se_gate_closed"] < 0.5 for point in row["loss_curve"])
    assert all(0.05 < point["embedding_spread"] <= 1.0 for point in row["loss_curve"])
    assert all(0.05 < point["class_token_spread"] <= 1.0 and 0.05 < point["token_spread"] <= 1.0
               for point in row["loss_curve"])
    assert row["left_plateau_at_step"] in (None, 20)  # a 20-step running mean exists from step 20 on
    assert 0.0 <= row["min_recall"] <= row["accuracy"] <= 1.0 and row["batch_size"] == 8
    assert row["device"] == "cpu"


@pytest.mark.slow
def test_paper_rungs_can_stop_early_in_a_longer_schedule(monkeypatch):
    """`--paper_schedule_steps 3000 --paper_steps 300` trains the first 300 steps of a 3000-step run: the warm-up (5% of
    the schedule unless `--paper_warmup_steps` says otherwise) decided whether the paper size left the plateau."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    args = learning.parse_args(["--paper_steps", "10", "--paper_schedule_steps", "1000", "--paper_warmup_steps", "100"])
    recipe = dict(learning.RECIPES["synthetic"])
    row = learning.train_paper(0, recipe, steps=args.paper_steps, batch_size=8, preset="tiny",
                               schedule_steps=args.paper_schedule_steps, warmup_steps=args.paper_warmup_steps)
    assert (row["steps"], row["schedule_steps"], row["warmup_steps"]) == (10, 1000, 100)
    assert row["loss_curve"][-1]["lr_factor"] == pytest.approx(11 / 100)  # still warming up after 10 of 100 steps
    row = learning.train_paper(0, recipe, steps=10, batch_size=8, preset="tiny", schedule_steps=1000)
    assert row["warmup_steps"] == 50 and row["loss_curve"][-1]["lr_factor"] == pytest.approx(11 / 50)
    row = learning.train_paper(0, recipe, steps=10, batch_size=8, preset="tiny")  # the schedule is the run
    assert (row["schedule_steps"], row["warmup_steps"], row["loss_curve"][-1]["lr_factor"]) == (10, 1, 0.0)


def test_paper_rungs_take_a_device_and_refuse_bf16_where_it_is_emulated(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning
    import torch

    default = learning.parse_args(["--rungs", "paper"]).paper_device
    assert default == ("cuda" if torch.cuda.is_available() else "cpu")
    assert learning.parse_args(["--paper_device", "cpu"]).paper_device == "cpu"
    recipe = dict(learning.RECIPES["synthetic"])
    # A device without native bf16 is refused by name before anything is built (the meta device has none).
    with pytest.raises(SystemExit, match="meta has no native bf16; use --paper_precision fp32"):
        learning.train_paper(0, recipe, steps=1, batch_size=8, precision="bf16", device="meta")
    monkeypatch.setattr("modeling_grefel.inference_grefel.cpu_flags", lambda: ["avx2"])
    with pytest.raises(SystemExit, match="this CPU has no native bf16"):
        learning.train_paper(0, recipe, steps=1, batch_size=8, precision="bf16", device="cpu")


def test_paper_config_overrides_reach_the_paper_size_network(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    import modeling_grefel

    class Built(Exception):
        pass

    def capture(config):
        raise Built(config)

    monkeypatch.setattr(modeling_grefel, "GReFELForImageClassification", capture)
    args = learning.parse_args(["--rungs", "paper", "--paper_config", '{"embedding_pooling": "mean", "head_hidden_sizes": []}'])
    with pytest.raises(Built) as built:
        learning.train_paper(0, dict(learning.RECIPES["synthetic"]), steps=1, batch_size=8, overrides=args.paper_config)
    config = built.value.args[0]
    assert (config.image_size, config.embedding_pooling, config.head_hidden_sizes) == (112, "mean", [])
    assert config.ir_depth == 50 and config.hidden_size == 768
    # The control: the tiny preset with one paper-size component.
    with pytest.raises(Built) as built:
        learning.train_paper(0, dict(learning.RECIPES["synthetic"]), steps=1, batch_size=8, preset="tiny",
                             overrides={"hidden_size": 768})
    config = built.value.args[0]
    assert (config.image_size, config.hidden_size, config.ir_depth) == (64, 768, 18)


@pytest.mark.slow
def test_hard_data_rungs_report_balanced_accuracy_and_calibration(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    output = tmp_path / "hard.json"
    learning.main(["--data", "hard", "--seeds", "0", "--rungs", "trunk", "grefel_linear", "--num_epochs", "1",
                   "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["data"] == {"name": "hard", "imbalance": 10.0, "label_noise": 0.2}
    rows = {row["rung"]: row for row in report["rows"]}
    assert set(rows) == {"trunk", "grefel_linear"}
    for row in rows.values():
        assert row["data"] == "hard" and row["steps"] == 530 // 32  # one epoch of the long-tailed images, full batches
        # the validation split stays clean and balanced, so its accuracy is its balanced accuracy
        assert row["balanced_accuracy"] == pytest.approx(row["accuracy"]) and 0.0 < row["ece"] < 1.0
    linear = rows["grefel_linear"]
    assert 0.0 < linear["corrected_ece"] < 1.0 and linear["corrected_ece"] != linear["ece"]


def test_first_step_probe_measures_how_far_each_group_moves_the_predictions(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import first_step

    from modeling_grefel import GReFELConfig

    config = GReFELConfig.tiny(num_labels=8)
    moved = first_step.first_step_shift(config, batch_size=8, lr=1e-3)
    assert {"ir_back", "fusion.blocks", "fusion.se_block", "grefel_head.primary"} <= set(moved["groups"])
    assert moved["all"]["kl"] > 0 and moved["groups"]["fusion.blocks"]["kl"] > 0
    # A step of size 0 leaves every prediction as it was: the parameters are restored and the masks redrawn alike.
    still = first_step.first_step_shift(config, batch_size=8, lr=0.0)
    assert all(entry == {"kl": 0.0, "prior_shift": 0.0} for entry in [still["all"], *still["groups"].values()])
    # What the head passes back to the trunk: three default-initialised hidden layers without BatchNorm shrink it.
    embedding = moved["embedding"]
    assert embedding["rms"] > 0 and embedding["gradient_norm"] > 0 and 0 < embedding["gradient_between_images"] <= 1
    deep = first_step.first_step_shift(GReFELConfig.tiny(num_labels=8, **first_step.CASES["tiny_paper_head_no_bn"][1]),
                                       batch_size=8, lr=1e-3)
    assert deep["embedding"]["gradient_norm"] < embedding["gradient_norm"] / 3


def test_embedding_diagnostics_see_a_closed_gate_and_a_collapsed_embedding(monkeypatch):
    """The paper rung's curve reports the SE gate and the embedding's spread: the state of a network stuck at ln C."""
    import torch

    from modeling_grefel import GReFELConfig, GReFELModel

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    gate = GReFELModel(GReFELConfig.tiny()).fusion.se_block
    pooled = torch.randn(8, gate.linear1.in_features)
    varied = torch.randn(8, gate.linear1.in_features)
    open_gate = learning.embedding_diagnostics(gate, pooled, varied)
    assert 0.4 < open_gate["se_gate_mean"] < 0.6 and open_gate["se_gate_closed"] == 0.0
    assert open_gate["embedding_spread"] > 0.8  # independent random embeddings: nearly all of it between samples
    with torch.no_grad():
        gate.linear2.bias.fill_(-10.0)
        gate.linear2.weight.zero_()
    closed = learning.embedding_diagnostics(gate, pooled, varied[:1].expand(8, -1))
    assert closed["se_gate_mean"] < 1e-4 and closed["se_gate_closed"] == 1.0
    assert closed["embedding_spread"] == 0.0


def test_token_diagnostics_tell_a_class_token_that_stopped_reading_the_image(monkeypatch):
    """The paper size's collapse: image tokens still vary between images, the class token after the first block no
    longer does."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    tokens = torch.randn(8, 5, 16)
    reading = learning.token_diagnostics(tokens)
    assert reading["class_token_spread"] > 0.5 and reading["token_spread"] > 0.5
    deaf = tokens.clone()
    deaf[:, 0] = torch.randn(16)  # one vector for every image
    stopped = learning.token_diagnostics(deaf)
    assert stopped["class_token_spread"] == 0.0 and stopped["token_spread"] == reading["token_spread"]
    assert learning.token_diagnostics(tokens[:, :1])["token_spread"] is None  # a last block that updated the class token alone


def test_plain_rungs_take_the_papers_head_and_are_summarised_apart(monkeypatch):
    """`--plain_head_hidden_sizes`: the CNN and the trunk with the paper's primary head, a rung of their own."""
    import torch
    from torch import nn

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    from modeling_grefel import GReFELConfig

    cnn = learning.PlainCNN(8, widths=(4, 8), head_hidden_sizes=[16, 12])
    kinds = [type(layer) for layer in cnn.classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 2 + [nn.Linear]
    assert cnn.classifier[0].in_features == 8 and cnn.classifier[3].p == GReFELConfig().head_dropout
    assert cnn(torch.randn(4, 3, 16, 16)).shape == (4, 8)
    trunk = learning.TrunkClassifier(GReFELConfig.tiny(num_labels=8), head_hidden_sizes=[16])
    assert trunk.classifier[0].in_features == GReFELConfig.tiny().hidden_size
    assert isinstance(learning.PlainCNN(8).classifier, nn.Linear)  # the reference itself is unchanged

    rows = [{"rung": "cnn", "seed": 0, "accuracy": 0.9, "macro_f1": 0.9, "min_recall": 0.8, "time_s": 1.0,
             "first_step_at_0.5": 40},
            {"rung": "cnn+paper_head", "seed": 0, "accuracy": 0.1, "macro_f1": 0.1, "min_recall": 0.0, "time_s": 1.0,
             "first_step_at_0.5": None}]
    summary = learning.summarise(rows)
    assert summary["cnn"]["mean_accuracy"] == 0.9 and summary["cnn+paper_head"]["mean_accuracy"] == 0.1


def test_head_variants_move_or_drop_the_batch_norm_and_name_their_rung(monkeypatch):
    """`--plain_head_batch_norm` / `--plain_head_dropout`: which part of the paper's head keeps scratch features at
    chance; each variant is a rung of its own, named by what differs from the paper config's head."""
    from torch import nn

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    layers = {norm: [type(layer) for layer in learning.paper_head(8, [16, 12], 4, norm, 0.0)]
              for norm in learning.HEAD_BATCH_NORMS}
    assert layers["after_relu"] == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 2 + [nn.Linear]
    assert layers["before_relu"] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert layers["none"] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert learning.paper_head(8, [16], 4, "before_relu", 0.25)[3].p == 0.25
    with pytest.raises(ValueError, match="batch_norm='after'"):
        learning.paper_head(8, [16], 4, "after")
    assert learning.head_rung_name("cnn") == "cnn+paper_head"
    assert learning.head_rung_name("cnn", "before_relu", 0.0) == "cnn+paper_head(batch_norm=before_relu,dropout=0.0)"
    cnn = learning.PlainCNN(8, widths=(4, 8), head_hidden_sizes=[16], batch_norm="none", dropout=0.0)
    assert [type(layer) for layer in cnn.classifier] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def test_plain_image_size_feeds_the_cnn_larger_images_as_a_rung_of_its_own(monkeypatch):
    """`--plain_image_size 112`: the plain CNN sees 112-px images in training and evaluation, and its rows are
    summarised apart from the 64-px reference."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    from emotionnet.data import with_raw_images
    from emotionnet.synthetic import make_synthetic_faces

    monkeypatch.setattr(learning, "load_data", lambda dataset: with_raw_images(
        make_synthetic_faces(num_per_class=4, eval_per_class=1)))  # 32 training images, 8 for validation
    seen = []
    original_forward = learning.PlainCNN.forward
    monkeypatch.setattr(learning.PlainCNN, "forward",
                        lambda self, pixels: seen.append(tuple(pixels.shape[-2:])) or original_forward(self, pixels))
    recipe = {**learning.RECIPES["synthetic"], "num_epochs": 1}
    row = learning.train_plain("cnn", 0, recipe, image_size=112)
    assert set(seen) == {(112, 112)} and len(seen) == 2  # one training step of 32, one evaluation batch of 8
    assert row["rung"] == "cnn(image_size=112)" and row["image_size"] == 112 and row["steps"] == 1
    assert learning.parse_args(["--plain_image_size", "112"]).plain_image_size == 112
    assert "image_size" not in learning.train_plain("cnn", 0, recipe)  # the reference row is as before
    assert set(seen[2:]) == {(64, 64)}


def test_ir_rung_and_plain_config_put_the_backbones_at_another_resolution(monkeypatch):
    """`--rungs ir trunk --plain_image_size 112 --plain_config '{"backbone_image_size": 112, ...}'`: the IR backbone
    alone, and the trunk, see 112-px images at 112 px, in rows named by what differs from the tiny preset."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning

    from emotionnet.data import with_raw_images
    from emotionnet.synthetic import make_synthetic_faces
    from modeling_grefel.backbones_grefel import GReFELIRBackbone

    monkeypatch.setattr(learning, "load_data", lambda dataset: with_raw_images(
        make_synthetic_faces(num_per_class=4, eval_per_class=1)))
    seen = []
    original_forward = GReFELIRBackbone.forward
    monkeypatch.setattr(GReFELIRBackbone, "forward",
                        lambda self, x: seen.append(tuple(x.shape[-2:])) or original_forward(self, x))
    args = learning.parse_args(["--rungs", "ir", "trunk", "--plain_image_size", "112", "--plain_config",
                                '{"backbone_image_size": 112, "window_sizes": [14, 14, 7]}'])
    recipe = {**learning.RECIPES["synthetic"], "num_epochs": 1}
    for rung in args.rungs:
        seen.clear()
        row = learning.train_plain(rung, 0, recipe, image_size=args.plain_image_size,
                                   config_overrides=args.plain_config)
        assert set(seen) == {(112, 112)} and len(seen) == 2  # one training step of 32, one evaluation batch of 8
        assert row["rung"] == f"{rung}(image_size=112,backbone_image_size=112,window_sizes=[14,14,7])"
        assert row["config_overrides"]["backbone_image_size"] == 112 and row["steps"] == 1
    seen.clear()
    assert learning.train_plain("ir", 0, recipe)["rung"] == "ir" and set(seen) == {(64, 64)}
    # `--ir_pool`: the IR rung's global pool, a rung of its own.
    assert learning.parse_args(["--ir_pool", "max"]).ir_pool == "max"
    for pool in ("max", "relu_mean"):
        row = learning.train_plain("ir", 0, recipe, image_size=80, ir_pool=pool,
                                   config_overrides={"backbone_image_size": 80, "window_sizes": [10, 10, 5]})
        assert row["rung"] == f"ir+{pool}_pool(image_size=80,backbone_image_size=80,window_sizes=[10,10,5])"
        assert row["ir_pool"] == pool
    with pytest.raises(ValueError, match="pool='sum': expected one of"):
        learning.IRClassifier(learning.GReFELConfig.tiny(), pool="sum")
    with pytest.raises(SystemExit, match="the `cnn` rung has none"):
        learning.train_plain("cnn", 0, recipe, config_overrides={"backbone_image_size": 112})


def test_warmup_reaches_train_py_and_rows_of_another_warmup_are_summarised_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import learning
    import train

    from emotionnet.run_folder import HISTORY, RESULTS

    seen = []

    def fake_main(argv):  # writes what train.py's run folder holds, without training
        seen.append(argv)
        folder = Path(argv[argv.index("--output_dir") + 1])
        recall = {"anger": 0.5, "happiness": 1.0}
        (folder / RESULTS).write_text(json.dumps({
            "eval_accuracy": 0.75, "eval_corrected_accuracy": 0.7, "eval_balanced_accuracy": 0.75, "eval_macro_f1": 0.7,
            "eval_ece": 0.1, "eval_corrected_ece": 0.2, "eval_per_class_recall": recall, "global_step": 40,
            "train_runtime_s": 1.0}))
        (folder / HISTORY).write_text(json.dumps([{"step": 40, "eval_accuracy": 0.75, "eval_corrected_accuracy": 0.7}]))

    monkeypatch.setattr(train, "main", fake_main)
    monkeypatch.setattr(learning, "write_json_atomic", lambda path, report: None)
    report = learning.main(["--rungs", "grefel", "--seeds", "3", "--warmup_steps", "40"])
    report["rows"].append(learning.train_grefel(3, dict(learning.RECIPES["synthetic"])))
    warmups = [argv[argv.index("--warmup_steps") + 1] for argv in seen]
    assert warmups == ["40", str(learning.RECIPES["synthetic"]["warmup_steps"])] and "3" in seen[0]
    first = report["rows"][0]
    assert (first["rung"], first["warmup_steps"], first["min_recall"], first["first_step_at_0.5"]) == ("grefel", 40, 0.5, 40)
    assert set(learning.summarise(report["rows"])) == {"grefel (warm-up 40)", "grefel"}
    # Rows say which read-out the tiny preset had; those of an earlier one are summarised apart.
    assert first["tiny_embedding_pooling"] == learning.GReFELConfig.tiny().embedding_pooling == "max"
    older = [{**row, "tiny_embedding_pooling": "mean"} for row in report["rows"]]
    assert set(learning.summarise(older)) == {"grefel (warm-up 40, mean read-out)", "grefel (mean read-out)"}
    assert first["num_epochs"] == learning.RECIPES["synthetic"]["num_epochs"]
    shorter = [{**row, "num_epochs": 3} for row in older]
    assert set(learning.summarise(shorter)) == {"grefel (3 epochs, warm-up 40, mean read-out)",
                                                "grefel (3 epochs, mean read-out)"}
