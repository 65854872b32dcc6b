"""Every command-line flag of hart_tf, in one module.

Names follow the original code where it had them (`img_dir`, `label_dir`, `alexnet_dir`,
`checkpoint_dir`, `run_name`). Entry points import this module and read `FLAGS`; flagfiles in
`flags/` set them per experiment, and later command-line flags override a flagfile.
Validators give one-line errors that name the flag.
"""

from __future__ import annotations

from absl import flags

from hart_tf.data.synthetic import SyntheticConfig

FLAGS = flags.FLAGS

DATASETS = ("synthetic", "kitti", "kth", "clips")

# --- data --------------------------------------------------------------------------------
flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Which dataset to train/evaluate on.")
flags.DEFINE_string("data_dir", None, "Dataset root (KITTI: the folder holding training/).")
flags.DEFINE_string("img_dir", None, "KITTI image folder (image_02), overrides data_dir.")
flags.DEFINE_string("label_dir", None, "KITTI label folder (label_02), overrides data_dir.")
flags.DEFINE_string("alexnet_dir", None, "Folder holding bvlc_alexnet.npy for the AlexNet V1.")
_DATA = SyntheticConfig()  # the synthetic data's defaults, defined once
flags.DEFINE_integer("num_distractors_max", _DATA.n_distractors[1],
                     "Synthetic data: most look-alike distractors per video (1 to this many; "
                     "0: none).")
flags.DEFINE_float("distractor_jitter", _DATA.distractor_jitter,
                   "Synthetic data: how far a distractor's size, colour and texture stray from "
                   "the target's (relative; larger is easier).")
flags.DEFINE_float("distractor_front_prob", _DATA.distractor_front_prob,
                   "Synthetic data: probability that a distractor passes in front of the "
                   "target (hiding it) rather than behind.")
flags.DEFINE_float("distractor_cross_speed", _DATA.distractor_cross_speed,
                   "Synthetic data: 0 moves each look-alike on its own random path past the "
                   "target; > 0 makes it cross the target's path once, in a straight line at "
                   "this speed relative to the target (pixels per frame).")
flags.DEFINE_float("occlusion_prob", _DATA.occlusion_prob,
                   "Synthetic data: probability that an occluding bar passes in front of the "
                   "target.")

# --- model -------------------------------------------------------------------------------
flags.DEFINE_enum("config", None, ["small", "kitti", "kth"],
                  "Model preset; default: small for synthetic, kitti for kitti, kth for kth.")
flags.DEFINE_list("image_size", None, "Frame size H,W in pixels (default: the preset's).")
flags.DEFINE_list("glimpse_size", None, "Glimpse size gh,gw (default: the preset's).")
flags.DEFINE_integer("rnn_units", None, "LSTM units (paper: 100).")
flags.DEFINE_float("keep_prob", None, "Ventral-stream dropout keep probability (paper: .75).")
flags.DEFINE_float("zoneout", None, "Zoneout probability on LSTM (c, h) (paper: .05).")
flags.DEFINE_bool("learned_sigma", False, "RATM-style learned glimpse sigma (ablation).")
flags.DEFINE_bool("appearance_attention", True, "Use the appearance attention (Table 1).")
flags.DEFINE_bool("attention_loss", True, "Train with the attention loss (Table 1).")
flags.DEFINE_bool("appearance_loss", True, "Train with the appearance loss (Table 1).")
flags.DEFINE_enum("box_readout", None, ["image", "glimpse"],
                  "Box correction in units of the image (the paper) or of the attention box "
                  "(default: the preset's).")
flags.DEFINE_bool("adaptive_loss", True, "Learn the loss weights (lambda = s^2 + eps).")
flags.DEFINE_float("l2_weight", 1e-4, "L2 weight decay on weight matrices and DFN weights.")

# --- optimisation ------------------------------------------------------------------------
flags.DEFINE_integer("batch_size", 16, "Sequences per batch (paper: 10).")
flags.DEFINE_enum("optimizer", "adam", ["rmsprop", "adam"],
                  "rmsprop (the paper's, with momentum) or adam (--momentum is its beta_1).")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate (paper, RMSProp: 3.33e-6).")
flags.DEFINE_float("momentum", 0.9, "RMSProp momentum, or Adam's beta_1 (paper: .9).")
flags.DEFINE_float("clip_norm", 1.0, "Gradient clipping by global norm (paper: .3).")
flags.DEFINE_list("lr_decay", ["20:0.3"], "Learning-rate factors by sequence length, e.g. 20:0.3 "
                  "multiplies the rate by .3 once the curriculum reaches 20 steps.")
flags.DEFINE_integer("steps_per_epoch", 50, "Training steps per epoch (curriculum check).")
flags.DEFINE_integer("epochs", 200, "Number of epochs to train.")
flags.DEFINE_float("max_minutes", 8.5, "Stop after this many minutes of training (0: off).")
flags.DEFINE_integer("seed", 0, "Random seed for weights, data and noise.")
flags.DEFINE_bool("mixed_precision", False, "bf16 compute with float32 losses/attention.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA-compile the train step; auto: on for JAX, off for TF on CPU.")
flags.DEFINE_bool("unroll", True, "Unroll the recurrence instead of a compiled loop "
                  "(TF on CPU: 30% faster steps, one graph per sequence length).")

# --- curriculum (the original's TrainSchedule) -------------------------------------------
flags.DEFINE_integer("curriculum_start", 5, "First training sequence length.")
flags.DEFINE_integer("curriculum_max", 20, "Longest training sequence length.")
flags.DEFINE_list("curriculum_lengths", ["5", "10", "20"],
                  "Explicit lengths to step through (e.g. 5,10,20); default start..max by 1.")
flags.DEFINE_float("curriculum_threshold", 0.55, "Train IoU needed to grow at the start length.")
flags.DEFINE_float("curriculum_threshold_decrease", 0.0,
                   "The threshold falls linearly by this much from start to max length.")
flags.DEFINE_integer("curriculum_min_epochs", 1, "Least epochs at a length before growing.")

# --- checkpoints, logs, evaluation -------------------------------------------------------
flags.DEFINE_string("run_name", "hart", "Name of this run.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Checkpoints go to <dir>/<run_name>.")
flags.DEFINE_string("logdir", None, "TensorBoard folder (default: runs/<run_name>).")
flags.DEFINE_integer("checkpoint_every", 200, "Save a checkpoint every N steps.")
flags.DEFINE_integer("keep_checkpoints", 3, "Keep the last K step checkpoints (and the best).")
flags.DEFINE_bool("resume", True, "Continue from the last checkpoint of this run if any.")
flags.DEFINE_string("init_from", None, "Start a new run from the weights of this checkpoint "
                    "(a .keras file, or a run folder: its best, else its latest) with a fresh "
                    "optimizer, curriculum and step count, e.g. to fine-tune on other data. "
                    "A run that resumes from its own checkpoint ignores it.")
flags.DEFINE_integer("image_every", 500, "Log TensorBoard images every N steps (0: off).")
flags.DEFINE_integer("eval_sequences", 32, "Validation/test sequences for evaluation.")
flags.DEFINE_integer("eval_steps", None, "Sequence length for evaluation (30 synthetic, 60 KITTI).")
flags.DEFINE_string("checkpoint", None, "Checkpoint (.keras) to evaluate / export / track with.")
flags.DEFINE_string("out_dir", None, "Where evaluate writes its JSON, plots and strips.")
flags.DEFINE_list("opencv_baselines", [], "evaluate: OpenCV trackers (csrt, kcf, mil) scored "
                  "on the same sequences beside HART (needs the bench extra).")


def _positive(name: str):
    flags.register_validator(name, lambda v: v is None or v > 0,
                             message=f"--{name} must be positive")


for _name in ("batch_size", "learning_rate", "steps_per_epoch", "epochs", "rnn_units",
              "checkpoint_every", "keep_checkpoints", "curriculum_start", "curriculum_max",
              "eval_sequences", "eval_steps", "clip_norm", "curriculum_min_epochs"):
    _positive(_name)

flags.register_validator("num_distractors_max", lambda v: v >= 0,
                         message="--num_distractors_max must be >= 0")
flags.register_validator("distractor_jitter", lambda v: v >= 0,
                         message="--distractor_jitter must be >= 0")
flags.register_validator("distractor_cross_speed", lambda v: v >= 0,
                         message="--distractor_cross_speed must be >= 0")
flags.register_validator("occlusion_prob", lambda v: 0.0 <= v <= 1.0,
                         message="--occlusion_prob must be in [0, 1]")
flags.register_validator("distractor_front_prob", lambda v: 0.0 <= v <= 1.0,
                         message="--distractor_front_prob must be in [0, 1]")
flags.register_validator("keep_prob", lambda v: v is None or 0.0 < v <= 1.0,
                         message="--keep_prob must be in (0, 1]")
flags.register_validator("zoneout", lambda v: v is None or 0.0 <= v < 1.0,
                         message="--zoneout must be in [0, 1)")
flags.register_validator("momentum", lambda v: 0.0 <= v < 1.0,
                         message="--momentum must be in [0, 1)")
flags.register_multi_flags_validator(
    ["curriculum_start", "curriculum_max"],
    lambda d: d["curriculum_start"] <= d["curriculum_max"],
    message="--curriculum_start must not exceed --curriculum_max")

# --- tracking / export -------------------------------------------------------------------
flags.DEFINE_string("model", None, "track: a SavedModel export folder, a .keras checkpoint "
                    "or a run folder.")
flags.DEFINE_string("frames", None, "track: folder of .jpg/.png frames (natural sort order).")
flags.DEFINE_string("video", None, "track: a video file instead of --frames (needs the video "
                    "extra: pip install -e '.[video]').")
flags.DEFINE_string("init", None, "track: the first frame's box as x,y,w,h in pixels; at "
                    "least half of it must lie inside the frame.")
flags.DEFINE_string("out", None, "track: where to write one x,y,w,h line per frame.")
flags.DEFINE_string("gif", None, "track: optional GIF of the frames with the tracked boxes.")
flags.DEFINE_string("export_dir", None, "export: SavedModel folder to write (for TF Serving "
                    "a numbered version, e.g. models/hart/1).")

# --- real-textured synthetic data --------------------------------------------------------
flags.DEFINE_enum("texture_source", "procedural", ["procedural", "photos"],
                  "Synthetic data: procedural textures, or backgrounds and objects cut from "
                  "real photographs with stronger augmentation (needs the real extra: "
                  "pip install -e '.[real]').")

# --- real clips in the training stream (hart_tf/data/clip_windows.py) ---------------------
flags.DEFINE_string("train_clips_dir", None, "Training: folder of real clips in the common "
                    "layout (one folder per clip with groundtruth.txt and its frames) to mix "
                    "into the synthetic batches; see --train_clips.")
flags.DEFINE_list("train_clips", [], "Training: the clips of --train_clips_dir to cut training "
                  "windows from (folder names, or category/name one level down as in LaSOT), "
                  "or 'all' for every sequence found; the folder's other clips stay held out.")
flags.DEFINE_float("train_clips_cache_mb", 2048.0, "Training: hold the --train_clips frames "
                   "decoded in memory when they fit in this many MiB (estimated from each "
                   "clip's first frame); else decode each window's frames when it is sampled "
                   "(JPEGs at a reduced DCT scale). 0: always decode per window.")
flags.register_validator("train_clips_cache_mb", lambda v: v >= 0,
                         message="--train_clips_cache_mb must be >= 0")
flags.DEFINE_integer("data_workers", 2, "Training: threads that render synthetic batches and "
                     "cut real-clip windows ahead of the model (decoding releases the GIL: "
                     "give a GPU run on HD frames one a CPU core; batches do not depend on it).")
flags.register_validator("data_workers", lambda v: v >= 1, message="--data_workers must be >= 1")
flags.DEFINE_float("train_clips_fraction", 0.5, "Training: share of each batch taken from "
                   "--train_clips (the rest is synthetic).")
flags.register_validator("train_clips_fraction", lambda v: 0.0 < v <= 1.0,
                         message="--train_clips_fraction must be in (0, 1]")
flags.register_multi_flags_validator(
    ["train_clips_dir", "train_clips"],
    lambda d: bool(d["train_clips_dir"]) == bool(d["train_clips"]),
    message="--train_clips_dir and --train_clips go together: the folder and the clips of it "
            "to train on")
flags.DEFINE_list("clips", [], "evaluate --dataset=clips: the clips of --data_dir to score "
                  "(folder names, category/name for LaSOT; default: all).")

# --- reliability -------------------------------------------------------------------------
flags.DEFINE_integer("max_bad_steps", 20, "Stop training after this many updates in a row "
                     "with a non-finite loss or gradient (each is skipped).")
flags.DEFINE_bool("run_eagerly", False, "Run the train step eagerly, op by op (debugging; "
                  "much slower per step, but no graph to build).")
_positive("max_bad_steps")

# --- several devices and hosts (hart_tf/distribute.py) -----------------------------------
flags.DEFINE_enum("distribute", "none", ["none", "data_parallel"],
                  "data_parallel: split each --batch_size batch over every device (JAX: "
                  "keras.distribution.DataParallel; TF: MirroredStrategy, or "
                  "MultiWorkerMirroredStrategy with --num_hosts > 1); see BUILD.md.")
flags.DEFINE_integer("num_hosts", 1, "Hosts (one process each) of a --distribute run.")
flags.DEFINE_string("coordinator_address", None, "JAX with --num_hosts > 1: host 0's "
                    "HOST:PORT, the same on every host (TF reads TF_CONFIG instead).")
flags.DEFINE_integer("process_id", 0, "This host's index in [0, --num_hosts); 0 is the chief, "
                     "which writes the checkpoints.")
_positive("num_hosts")
flags.register_validator("process_id", lambda v: v >= 0, message="--process_id must be >= 0")
