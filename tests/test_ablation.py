"""Table 1 ablations: the four flagfiles and experiments/ablation.py (tables, verdicts, figures)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hart_tf.cli import common as cli
from hart_tf.cli.flags import FLAGS

REPO = Path(__file__).resolve().parents[1]
# Table 1 of the paper as switches: learned_sigma, appearance_attention, attention_loss,
# appearance_loss.
SWITCHES = {
    "spatial_learned_sigma": (True, False, False, False),
    "spatial": (False, False, False, False),
    "appearance": (False, True, True, False),
    "hart": (False, True, True, True),
}
NAMES = ("learned_sigma", "appearance_attention", "attention_loss", "appearance_loss")


def _load_tool():
    if "tools_ablation" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tools_ablation",
                                                      REPO / "experiments" / "ablation.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["tools_ablation"] = module
        spec.loader.exec_module(module)
    return sys.modules["tools_ablation"]


@pytest.fixture
def parse():
    """Parses argv into the global FLAGS for one test, then puts them back unparsed."""

    def run(argv):
        FLAGS.unparse_flags()
        FLAGS(["test"] + argv)

    yield run
    FLAGS.unparse_flags()


def _flagfile_settings(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.strip().removeprefix("--").split("=", 1)
            out[name] = value
    return out


@pytest.mark.parametrize("variant", sorted(SWITCHES))
def test_flagfile_sets_the_table_1_switches(variant):
    path = REPO / "flags" / f"ablation_{variant}.cfg"
    header = path.read_text().split("\n--", 1)[0]
    assert "Table 1" in header and "python experiments/ablation.py" in header
    settings = _flagfile_settings(path)
    # Model switches only (plus a run name), so the file combines with any dataset's.
    assert set(settings) == set(NAMES) | {"run_name"}
    for name, want in zip(NAMES, SWITCHES[variant], strict=True):
        assert FLAGS[name].parser.parse(settings[name]) is want, name


@pytest.mark.parametrize("variant", sorted(SWITCHES))
def test_flagfile_combines_with_kitti(parse, variant):
    parse(["--flagfile=flags/kitti.cfg", f"--flagfile=flags/ablation_{variant}.cfg"])
    config = cli.config_from_flags()
    assert FLAGS.dataset == "kitti" and config.name == "kitti" and FLAGS.batch_size == 10
    assert tuple(getattr(config, n) for n in NAMES) == SWITCHES[variant]


def _record(variant, seed, iou, steps=30):
    curve = np.full(steps, iou).tolist()
    return {
        "variant": variant, "seed": seed, "params": 1000, "minutes": 2.0, "steps": 100,
        "length": 10,
        "test": {"mean_iou": iou, "success_auc": iou, "precision_20": iou, "iou_per_step": curve,
                 "static_mean_iou": 0.3, "static_success_auc": 0.3, "static_precision_20": 0.4,
                 "static_iou_per_step": np.full(steps, 0.3).tolist(), "sequences": 8},
    }


def test_aggregate_and_ordering_verdicts():
    tool = _load_tool()
    records = [_record("spatial", 0, 0.50), _record("spatial", 1, 0.54),
               _record("appearance", 0, 0.52), _record("appearance", 1, 0.60),
               _record("hart", 0, 0.70), _record("hart", 1, 0.72),
               _record("spatial_learned_sigma", 0, 0.80),
               _record("spatial_learned_sigma", 1, 0.82)]
    agg = tool.aggregate(records)
    assert agg["spatial"]["mean_iou"] == pytest.approx(0.52)
    assert agg["spatial"]["sd"] == pytest.approx(np.std([0.50, 0.54], ddof=1))
    assert agg["hart"]["per_seed"] == [0.70, 0.72]
    lines = tool.ordering(agg)
    assert lines[0].startswith("HART > App Att: holds beyond the seed spread")
    assert lines[1].startswith("App Att > Spatial Att: not resolved: the seeds overlap")
    assert lines[2].startswith("Spatial Att > Spatial Att, learned sigma: reversed beyond the "
                               "seed spread")
    one = tool.aggregate([_record("hart", 0, 0.7), _record("appearance", 0, 0.6)])
    assert "one seed only" in tool.ordering(one)[0] and np.isnan(one["hart"]["sd"])
    table = tool.markdown_table(agg, 30)
    assert "| HART | 0.81 | 0.710 ± 0.014 | [0.700, 0.720] |" in table
    assert "| Spatial Att, learned sigma | – | 0.810 ± 0.014 |" in table  # no paper row
    assert "| static box (first box repeated) | – | 0.300 |" in table


def test_update_results_keeps_other_sections(tmp_path):
    tool = _load_tool()
    path = tmp_path / "RESULTS.md"
    tool.update_results(path, "<!-- ablation:synthetic -->\nA\n<!-- /ablation:synthetic -->",
                        "synthetic")
    text = path.read_text()
    assert tool.SECTION in text and "\nA\n" in text
    path.write_text(text + "\n## Real footage\n\nmine\n")
    tool.update_results(path, "<!-- ablation:kitti -->\nK\n<!-- /ablation:kitti -->", "kitti")
    tool.update_results(path, "<!-- ablation:synthetic -->\nB\n<!-- /ablation:synthetic -->",
                        "synthetic")
    text = path.read_text()
    assert "\nA\n" not in text and text.count("<!-- ablation:synthetic -->") == 1
    # The kitti block went into the ablation section, before the next section.
    assert text.index("\nB\n") < text.index("\nK\n") < text.index("## Real footage")
    assert text.endswith("## Real footage\n\nmine\n")


# About 70 s of CPU on 2 cores (eight graph traces and four model loads of two tiny runs).
@pytest.mark.slow
def test_ablation_end_to_end_tiny(parse, tmp_path):
    tool = _load_tool()
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Synthetic quality bars\n\nlead's\n")
    argv = ["experiments/ablation.py", "--variants=spatial,appearance", "--seeds=0",
            "--image_size=64,80", "--glimpse_size=8,8", "--rnn_units=8", "--batch_size=2",
            "--steps_per_epoch=2", "--epochs=1", "--curriculum_lengths=3", "--eval_steps=3",
            "--eval_sequences=2", "--max_minutes=0", "--image_every=0", "--fig_sequences=1",
            f"--checkpoint_dir={tmp_path / 'ck'}", f"--logdir={tmp_path / 'runs'}",
            f"--out_dir={tmp_path / 'out'}", f"--results={results}"]
    parse(argv[1:])
    report = tool.run_ablation(argv)
    assert [r["variant"] for r in report["runs"]] == ["spatial", "appearance"]
    assert report["runs"][0]["params"] < report["runs"][1]["params"]  # no appearance streams
    for r in report["runs"]:
        assert len(r["test"]["iou_per_step"]) == 3 and 0 <= r["test"]["mean_iou"] <= 1
        assert (tmp_path / "ck" / f"ablation_synthetic_{r['variant']}_s0" / "best.keras").exists()
    text = results.read_text()
    assert "lead's" in text and tool.SECTION in text
    assert "| Spatial Att | 0.60 |" in text and "| App Att | 0.78 |" in text
    assert "App Att > Spatial Att: one seed only" in text
    assert "Command: `python experiments/ablation.py --variants=spatial,appearance" in text
    fig5 = np.asarray(Image.open(tmp_path / "out" / "iou_per_step.png"))
    fig6 = np.asarray(Image.open(tmp_path / "out" / "location_maps.png"))
    assert fig5.shape[:2] == (400, 600) and fig6.shape[0] > 100 and fig6.std() > 10
    # Rerunning the same command reuses the runs and rewrites the block in place.
    again = tool.run_ablation(argv)
    assert again["runs"][0]["test"] == report["runs"][0]["test"]
    assert results.read_text().count("<!-- ablation:synthetic -->") == 1
