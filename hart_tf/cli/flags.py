"""Every command-line flag of hart_tf, in one module.

A training flag sets the `hart_tf.train.options` field of the same name and takes its
default from there (the one source of defaults; a test checks that they agree). Model flags
override the preset's `HARTConfig` field of the same name and default to the preset's
value. Flagfiles in `flags/` set them per experiment; later command-line flags win.
Validators give one-line errors that name the flag.

Imports neither Keras nor TensorFlow, so a bad flag is reported before either loads.
"""

from __future__ import annotations

from absl import flags

from hart_tf.train.options import CURRICULUM_PROTOCOLS, flat_defaults

FLAGS = flags.FLAGS
DATASETS = ("synthetic", "kitti", "kth", "clips")
D = flat_defaults()  # the training options' defaults, by flag name


def _list(values) -> list[str]:
    return [str(v) for v in values]


# --- data --------------------------------------------------------------------------------
flags.DEFINE_enum("dataset", D["dataset"], DATASETS, "Dataset to train on or evaluate on.")
flags.DEFINE_string("data_dir", D["data_dir"], "Dataset root (KITTI: the folder holding "
                    "training/; clips: the folder of clips).")
flags.DEFINE_string("alexnet_dir", None, "Folder holding bvlc_alexnet.npy for the AlexNet V1.")
flags.DEFINE_integer("num_distractors_max", D["num_distractors_max"], "Synthetic data: most "
                     "look-alike distractors per video (1 to this many; 0: none).")
flags.DEFINE_float("distractor_jitter", D["distractor_jitter"], "Synthetic data: how far a "
                   "look-alike's size, colour and texture stray from the target's.")
flags.DEFINE_float("distractor_cross_speed", D["distractor_cross_speed"], "Synthetic data: "
                   "0 moves each look-alike on its own random path past the target; > 0 makes "
                   "it cross the target's path once, at this speed relative to the target.")
flags.DEFINE_float("occlusion_prob", D["occlusion_prob"], "Synthetic data: probability that "
                   "an occluding bar passes in front of the target.")
flags.DEFINE_string("train_clips_dir", D["train_clips_dir"], "Training: a folder of real "
                    "clips (one folder per clip with groundtruth.txt and its frames) to mix "
                    "into the synthetic batches; see --train_clips.")
flags.DEFINE_list("train_clips", _list(D["train_clips"]), "Training: the clips of "
                  "--train_clips_dir to cut windows from (names, category/name for LaSOT, or "
                  "'all'); the folder's other clips stay held out.")
flags.DEFINE_list("val_clips", _list(D["val_clips"]), "Training: clips of --train_clips_dir "
                  "that choose the best checkpoint instead of training (real validation).")
flags.DEFINE_integer("data_workers", D["data_workers"], "Training: threads rendering batches "
                     "ahead of the model (batches do not depend on it).")
flags.DEFINE_enum("render_on", D["render_on"], ["auto", "host", "device"], "Training: where "
                  "batches are made: host (NumPy threads; KITTI/KTH windows cut from frames "
                  "held in host memory), device (JAX: synthetic batches compiled on the "
                  "accelerator; KITTI/KTH frames held there) or auto (device for synthetic, "
                  "KITTI and KTH data on a JAX GPU/TPU, else host).")
flags.DEFINE_integer("eval_sequences", D["eval_sequences"], "Validation and test sequences.")
flags.DEFINE_integer("eval_steps", D["eval_steps"], "Frames scored per test sequence "
                     "(default: 60 for KITTI as the paper, else 30).")
flags.DEFINE_list("clips", [], "evaluate --dataset=clips: the clips of --data_dir to score "
                  "(default: all).")

# --- model (default: the preset's value) --------------------------------------------------
flags.DEFINE_enum("config", None, ["small", "kitti", "kth"],
                  "Model preset; default: kitti for KITTI, kth for KTH, else small.")
flags.DEFINE_list("image_size", None, "Frame size H,W in pixels.")
flags.DEFINE_list("glimpse_size", None, "Glimpse size gh,gw.")
flags.DEFINE_integer("rnn_units", None, "LSTM units (the paper: 100).")
flags.DEFINE_bool("learned_sigma", False, "Table 1 'Spatial Att, learned sigma': the glimpse "
                  "widths are learned instead of the fixed polynomial of the stride.")
flags.DEFINE_bool("appearance_attention", True, "Table 1: the appearance attention.")
flags.DEFINE_bool("attention_loss", True, "Table 1: the attention loss.")
flags.DEFINE_bool("appearance_loss", True, "Table 1: the appearance loss.")
flags.DEFINE_bool("adaptive_loss", True, "Learn the loss weights (lambda = s^2 + eps).")

# --- optimiser and schedule --------------------------------------------------------------
flags.DEFINE_integer("batch_size", D["batch_size"], "Sequences per batch (the paper: 10).")
flags.DEFINE_enum("optimizer", D["optimizer"], ["rmsprop_tf1", "rmsprop", "adam"],
                  "rmsprop_tf1 (the original's: TF1 RMSProp, mean square from 1, eps 1e-10), "
                  "rmsprop (Keras') or adam; all with momentum 0.9 (Adam's beta_1).")
flags.DEFINE_float("learning_rate", D["learning_rate"], "Learning rate at the first length "
                   "(the paper, RMSProp: 3.3e-6).")
flags.DEFINE_float("clip_norm", D["clip_norm"], "Clip gradients to this global norm.")
flags.DEFINE_float("clip_rms", D["clip_rms"], "> 0: clip the gradients on the root mean "
                   "square of all their elements instead, as the original (0.3).")
flags.DEFINE_integer("warmup_steps", D["warmup_steps"], "The learning rate rises linearly "
                     "to its value over the first this many updates (0: none; large batches).")
flags.DEFINE_list("lr_decay", [f"{k}:{v}" for k, v in D["lr_decay"].items()],
                  "Learning-rate factors by sequence length: 20:0.3 multiplies the rate by "
                  ".3 once the curriculum reaches 20 steps.")
flags.DEFINE_list("curriculum_lengths", _list(D["curriculum_lengths"]),
                  "Training sequence lengths to step through.")
flags.DEFINE_float("curriculum_threshold", D["curriculum_threshold"],
                   "Train IoU needed to leave the first length.")
flags.DEFINE_float("curriculum_threshold_decrease", D["curriculum_threshold_decrease"],
                   "The threshold falls linearly by this much from the first to the last length.")
flags.DEFINE_integer("curriculum_min_epochs", D["curriculum_min_epochs"],
                     "Least epochs at a length before growing.")
flags.DEFINE_enum("curriculum_protocol", "ours", list(CURRICULUM_PROTOCOLS),
                  "ours: an epoch of --steps_per_epoch updates, a promotion check at every "
                  "epoch end on the running train IoU; original: an epoch is one pass over "
                  "the augmented windows (KITTI, KTH), checks every 3 epochs on the test-mode "
                  "IoU over a quarter epoch of training batches.")
flags.DEFINE_integer("steps_per_epoch", D["steps_per_epoch"], "Updates per epoch.")
flags.DEFINE_integer("epochs", D["epochs"], "Epochs to train.")
flags.DEFINE_float("max_minutes", D["max_minutes"], "Stop after this many minutes (0: off).")

# --- the run -----------------------------------------------------------------------------
flags.DEFINE_string("run_name", D["run_name"], "Name of this run.")
flags.DEFINE_string("checkpoint_dir", D["checkpoint_dir"], "Checkpoints go to "
                    "<dir>/<run_name>.")
flags.DEFINE_string("logdir", D["logdir"], "TensorBoard folder (default: runs/<run_name>).")
flags.DEFINE_integer("checkpoint_every", D["checkpoint_every"], "Also checkpoint every N "
                     "updates (every epoch end always does).")
flags.DEFINE_bool("resume", D["resume"], "Continue from the run's last good checkpoint.")
flags.DEFINE_string("init_from", D["init_from"], "Start a new run from the weights of this "
                    "checkpoint (a .keras file or a run folder), with a fresh optimizer, "
                    "curriculum and step count; ignored when the run resumes.")
flags.DEFINE_integer("image_every", D["image_every"], "TensorBoard images every N updates "
                     "(0: off).")
flags.DEFINE_integer("seed", D["seed"], "Random seed for weights, data and noise.")
flags.DEFINE_bool("unroll", D["unroll"], "Unroll the recurrence (TF on the CPU: faster "
                  "steps, one graph per sequence length).")
flags.DEFINE_bool("run_eagerly", D["run_eagerly"], "Run the train step op by op (debugging).")
flags.DEFINE_enum("distribute", D["distribute"], ["none", "data_parallel"],
                  "data_parallel: split each batch over every device of every host (see "
                  "docs/distributed.md).")
flags.DEFINE_integer("num_hosts", D["num_hosts"], "Hosts (one process each) of a "
                     "--distribute run.")
flags.DEFINE_string("coordinator_address", D["coordinator_address"], "JAX with --num_hosts "
                    "> 1: host 0's HOST:PORT (TensorFlow reads TF_CONFIG instead).")
flags.DEFINE_integer("process_id", D["process_id"], "This host's index; 0 is the chief, "
                     "which writes the checkpoints.")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's start-up log (hidden by default).")

# --- evaluate, track, export -------------------------------------------------------------
flags.DEFINE_string("model", None, "The model to evaluate, track or export with: a .keras "
                    "checkpoint, a run folder (its best, else latest), a SavedModel folder "
                    "(track) or 'pretrained' (the model shipped with hart_tf).")
flags.DEFINE_string("frames", None, "track: a folder of .jpg/.png frames (natural order) or a "
                    "video file (needs the video extra).")
flags.DEFINE_string("init", None, "track: the first frame's box as x,y,w,h in pixels.")
flags.DEFINE_string("out", None, "track: the x,y,w,h file to write; evaluate: the report "
                    "folder; export: the SavedModel folder (for TF Serving a numbered version, "
                    "e.g. models/hart/1).")
flags.DEFINE_string("gif", None, "track: also write a GIF of the frames with the boxes.")
flags.DEFINE_list("opencv_baselines", [], "evaluate: OpenCV trackers (csrt, kcf, mil) scored "
                  "beside HART (needs the bench extra).")


# --- validators --------------------------------------------------------------------------
def _check(name: str, ok, what: str) -> None:
    flags.register_validator(name, lambda v: v is None or ok(v), message=f"--{name} {what}")


for _name in ("batch_size", "learning_rate", "steps_per_epoch", "epochs", "rnn_units",
              "checkpoint_every", "eval_sequences", "eval_steps", "clip_norm",
              "curriculum_min_epochs", "num_hosts"):
    _check(_name, lambda v: v > 0, "must be positive")
for _name in ("num_distractors_max", "distractor_jitter", "distractor_cross_speed",
              "process_id", "max_minutes", "clip_rms"):
    _check(_name, lambda v: v >= 0, "must be >= 0")
_check("data_workers", lambda v: v >= 1, "must be >= 1")
_check("warmup_steps", lambda v: v >= 0, "must be >= 0")
_check("occlusion_prob", lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
flags.register_multi_flags_validator(
    ["train_clips_dir", "train_clips"],
    lambda d: bool(d["train_clips_dir"]) == bool(d["train_clips"]),
    message="--train_clips_dir and --train_clips go together: the folder and the clips of it "
            "to train on")


# --- TensorBoard -------------------------------------------------------------------------
