"""Data-parallel training over the devices of one host or of several hosts.

`--distribute=data_parallel` hands the work to the backend's own engine (no hand-written
gradient exchange):

* JAX: `keras.distribution.DataParallel` over every device (of every host, after
  `keras.distribution.initialize`). The train step is one SPMD program on global arrays:
  the global batch is split over the devices, the loss is the global-batch mean, batch-norm
  statistics and dropout/zoneout noise are those of the global batch, so N devices compute
  what one device computes (up to the order of float sums).
* TensorFlow: `tf.distribute.MirroredStrategy` (one host: its GPUs, else its logical CPUs)
  or `MultiWorkerMirroredStrategy` (several hosts; the cluster comes from TF_CONFIG), made
  the process's default strategy, so every model built or loaded afterwards has mirrored
  variables. Each replica takes its shard's mean loss scaled by 1/N, the gradients are
  summed over the replicas once, in `GuardedRMSprop.apply`, before the norm, clipping and
  NaN skip. Unlike one device, batch-norm statistics are each replica's own (as Keras'
  `BatchNormalization(synchronized=False)`) and every replica draws the same noise stream.

Everywhere: `fit` gets the global batch (`--batch_size`) each step; with JAX on several
hosts each host feeds its own slice (`feed`). Metrics are aggregated over the devices by
the engine, so the curriculum, the NaN guard and the validation IoU see the same numbers on
every host and decide the same. Checkpoints are written by the chief (host 0) only and hold
plain arrays, so a checkpoint restores on any device count.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

MODES = ("none", "data_parallel")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this process trains: the mode, the global device count and this host's place.

    Attributes:
        mode: "none" (one device) or "data_parallel".
        backend: the Keras backend the plan was made for.
        num_devices: replicas over all hosts (the global batch is split into this many).
        num_hosts: processes taking part (one per host).
        host: this process's index; host 0 is the chief that writes checkpoints.
        engine: the `keras.distribution.DataParallel` or `tf.distribute.Strategy` in use.
    """

    mode: str = "none"
    backend: str = ""
    num_devices: int = 1
    num_hosts: int = 1
    host: int = 0
    engine: Any = None
    key: tuple = ()  # the options it was made from, so `setup` can be called again

    @property
    def is_chief(self) -> bool:
        return self.host == 0

    def host_slice(self, global_batch: int) -> slice:
        """This host's rows of a global batch (all rows unless JAX spans several hosts)."""
        if self.backend != "jax" or self.num_hosts == 1:
            return slice(0, global_batch)
        per_host = global_batch // self.num_hosts
        return slice(self.host * per_host, (self.host + 1) * per_host)


_PLAN = Plan()
_INITIALIZED_HOSTS: tuple | None = None  # (coordinator, num_hosts, host) once initialised


def current() -> Plan:
    """The plan set by the last `setup` (one device when none was made)."""
    return _PLAN


def is_chief() -> bool:
    return _PLAN.is_chief


def _check(options) -> None:
    mode = options.run.distribute
    if mode not in MODES:
        raise ValueError(f"--distribute must be one of {', '.join(MODES)}, got {mode!r}")
    hosts = int(options.run.num_hosts)
    if hosts < 1:
        raise ValueError(f"--num_hosts must be at least 1, got {hosts}")
    if hosts > 1 and mode != "data_parallel":
        raise ValueError(f"--num_hosts={hosts} needs --distribute=data_parallel")
    if hosts > 1 and not 0 <= int(options.run.process_id) < hosts:
        raise ValueError(f"--process_id must be in [0, {hosts}) for --num_hosts={hosts}, "
                         f"got {options.run.process_id}")
    if hosts > 1 and options.schedule.max_minutes:
        # Each host reads its own clock: one could stop an epoch before the others and hang.
        raise ValueError("--max_minutes cannot be used with --num_hosts > 1 (hosts could stop "
                         "at different epochs); bound the run with --epochs")


def setup(options, devices: int | None = None) -> Plan:
    """Makes the process-wide plan of `options` (`distribute`, `num_hosts`,
    `coordinator_address`, `process_id`, `batch_size`); call before any model is built.

    Calling it again with the same options returns the same plan; "none" undoes a plan
    made here before. `devices` uses only the first N devices of one host (benchmarks).

    Raises:
        ValueError: a bad flag or a batch the devices cannot share, naming the flag.
    """
    global _PLAN
    _check(options)
    backend = keras.backend.backend()
    key = (options.run.distribute, backend, int(options.run.num_hosts),
           options.run.coordinator_address, int(options.run.process_id))
    if _PLAN.mode != "none" and key == _PLAN.key:
        _check_batch(_PLAN, options)
        return _PLAN
    reset()
    if options.run.distribute == "none":
        return _PLAN
    if devices is not None and (devices < 1 or int(options.run.num_hosts) > 1):
        raise ValueError(f"devices={devices}: a positive count, on one host only")
    if backend == "jax":
        plan = _jax_plan(options, devices)
    elif backend == "tensorflow":
        plan = _tf_plan(options, devices)
    else:
        raise ValueError(f"--distribute=data_parallel supports the jax and tensorflow "
                         f"backends, not KERAS_BACKEND={backend}")
    _PLAN = plan = dataclasses.replace(plan, key=key)
    try:
        _check_batch(plan, options)
    except ValueError:
        reset()
        raise
    if not plan.is_chief:
        # The other hosts' TensorBoard logs go to a side folder; the chief's stay clean.
        options.run.logdir = str(options.log_dir / f"host{plan.host}")
    return plan


def _check_batch(plan: Plan, options) -> None:
    if options.optimizer.batch_size % plan.num_devices:
        raise ValueError(f"--batch_size={options.optimizer.batch_size} does not split evenly "
                         "over the "
                         f"{plan.num_devices} devices of --distribute=data_parallel; use a "
                         f"multiple of {plan.num_devices}")


def reset() -> None:
    """Back to one device: removes the distribution or strategy that `setup` installed."""
    global _PLAN
    if _PLAN.mode != "none":
        if _PLAN.backend == "jax":
            keras.distribution.set_distribution(None)
        else:
            import tensorflow as tf

            tf.distribute.experimental_set_strategy(None)
    _PLAN = Plan()


def _jax_plan(options, count: int | None) -> Plan:
    global _INITIALIZED_HOSTS
    hosts = int(options.run.num_hosts)
    if hosts > 1:
        wanted = (options.run.coordinator_address, hosts, int(options.run.process_id))
        if not options.run.coordinator_address:
            raise ValueError(f"--num_hosts={hosts} needs --coordinator_address=HOST:PORT "
                             "(host 0's address, the same on every host)")
        if _INITIALIZED_HOSTS is None:
            keras.distribution.initialize(options.run.coordinator_address, hosts,
                                          int(options.run.process_id))
            _INITIALIZED_HOSTS = wanted
        elif _INITIALIZED_HOSTS != wanted:
            raise ValueError(f"this process already joined the cluster {_INITIALIZED_HOSTS}; "
                             "a process joins one cluster only")
    import jax

    devices = _first(keras.distribution.list_devices(), count)
    # `feed` gives each host its rows itself (Keras would only shard a tf.data.Dataset).
    engine = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(engine)
    return Plan("data_parallel", "jax", len(devices), jax.process_count(),
                jax.process_index(), engine)


def _tf_plan(options, count: int | None) -> Plan:
    import tensorflow as tf

    hosts = int(options.run.num_hosts)
    if hosts > 1:
        _check_tf_config(hosts, int(options.run.process_id))
        engine = tf.distribute.MultiWorkerMirroredStrategy()
        host = int(engine.cluster_resolver.task_id)
    else:
        # The GPUs, else the logical CPUs (several only where a test configured them).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        engine = tf.distribute.MirroredStrategy([d.name for d in _first(devices, count)])
        host = 0
    tf.distribute.experimental_set_strategy(engine)
    return Plan("data_parallel", "tensorflow", engine.num_replicas_in_sync, hosts, host,
                engine)


def _first(devices: list, count: int | None) -> list:
    if count is not None and count > len(devices):
        raise ValueError(f"{count} devices asked for, but this host has {len(devices)}")
    return devices[:count]


def _check_tf_config(hosts: int, process_id: int) -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(f"--num_hosts={hosts} on TensorFlow needs the TF_CONFIG environment "
                         "variable (every worker's address and this host's index; BUILD.md)")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        index = int(config["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("TF_CONFIG is not JSON with cluster.worker and task.index") from None
    if len(workers) != hosts or index != process_id:
        raise ValueError(f"TF_CONFIG names {len(workers)} workers and task index {index}, but "
                         f"--num_hosts={hosts} --process_id={process_id}")


def feed(make_batches: Callable[[], Iterator[tuple[dict, dict]]]):
    """What `fit` is given, from a function that starts the epoch's stream of global batches.

    One device or JAX on one host: that stream. JAX on several hosts: each batch's rows of
    this host (Keras assembles the global array from the hosts' slices). TensorFlow: a
    `tf.data.Dataset` that restarts the stream each time it is iterated, because under a
    strategy Keras' `fit` first iterates its input once to build the model and then again
    to train; a Python generator would lose the batches read ahead the first time
    (measured, Keras 3.15: steps 0, 1, 6, 7 were trained on instead of 0, 1, 2, 3).
    """
    plan = _PLAN
    if plan.backend == "tensorflow" and plan.num_devices > 1:
        return _restartable_dataset(make_batches)
    if plan.backend == "jax" and plan.num_hosts > 1:
        return _host_rows(make_batches(), plan)
    return make_batches()


def _host_rows(batches: Iterator, plan: Plan) -> Iterator:
    for x, y in batches:
        rows = plan.host_slice(len(x["frames"]))
        yield keras.tree.map_structure(lambda a, rows=rows: a[rows], (x, y))


def _restartable_dataset(make_batches: Callable[[], Iterator]):
    import tensorflow as tf

    first = make_batches()
    try:
        example = next(first)
    except StopIteration:
        return tf.data.Dataset.from_tensor_slices(([], []))  # fit reports the empty input
    finally:
        if hasattr(first, "close"):  # a generator: only its shapes were needed
            first.close()
    signature = keras.tree.map_structure(
        lambda a: tf.TensorSpec(np.shape(a), tf.as_dtype(np.asarray(a).dtype)), example)
    dataset = tf.data.Dataset.from_generator(make_batches, output_signature=signature)
    options = tf.data.Options()
    # Every worker makes the same global batches; each keeps its replicas' rows of them.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def prepare_model(model: keras.Model) -> keras.Model:
    """Makes a HART built or loaded under the plan train and predict as on one device.

    Nothing to do on one device. JAX: the optimizer is built now, because a train function
    made before it (`use_function_for_length`) fixes the state's shardings without its
    slots. TensorFlow:
      * Keras sums the replicas' gradients and expects each replica's loss divided by the
        replica count (its own `compute_loss` does that); HART's override does not.
      * Keras' `predict_on_batch` hands every replica the whole batch and returns the N
        copies concatenated (measured, Keras 3.15); `predict` splits the batch instead.
      * Before training, Keras' `fit` reads a batch and reduces it over the replicas to
        build the model, which is built already; under MultiWorkerMirroredStrategy that
        reduction fails (measured, Keras 3.15), so the build skips the batch.
      * Under MultiWorkerMirroredStrategy Keras averages the replicas' logs along axis 0,
        which scalars lack (measured, Keras 3.15); there they are given that axis.
    """
    if _PLAN.mode == "none" or model.__dict__.get("_hart_distributed"):
        return model
    if _PLAN.backend == "jax":
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        return model
    import tensorflow as tf

    unscaled = model.compute_loss

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = unscaled(x, y, y_pred, sample_weight, training=training)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype)

    metrics = model.compute_metrics
    several_hosts = isinstance(_PLAN.engine, tf.distribute.MultiWorkerMirroredStrategy)

    def compute_metrics(x, y, y_pred, sample_weight=None):
        logs = metrics(x, y, y_pred, sample_weight=sample_weight)
        return {k: tf.reshape(v, (1,)) for k, v in logs.items()} if several_hosts else logs

    def predict_on_batch(x):
        rows = len(keras.tree.flatten(x)[0])
        return model.predict(x, batch_size=rows, verbose=0)

    def maybe_symbolic_build(iterator=None, data_batch=None):
        with _PLAN.engine.scope():
            # Reads a batch only if a layer is unbuilt; builds the optimizer.
            model._symbolic_build(iterator=iterator, data_batch=data_batch)

    model.compute_loss = compute_loss
    model.compute_metrics = compute_metrics
    model.predict_on_batch = predict_on_batch
    model._maybe_symbolic_build = maybe_symbolic_build
    model.__dict__["_hart_distributed"] = True
    return model


class _NonChiefCheckpoints:
    """A non-chief host's checkpoints: it saves as the chief does (saving is collective on
    both backends: TF reads distributed variables, Keras' JAX saving makes variables under
    the distribution, a cross-host check; a chief saving alone waits forever, measured with
    2 JAX processes), but into a private folder deleted at exit, and answers `best`/`latest`
    from it, so its decisions never depend on how far the chief's writes have got. It
    resumes from the chief's folder, read before this view replaces the manager."""

    def __init__(self, manager):
        folder = tempfile.mkdtemp(prefix=f"hart-host{_PLAN.host}-")
        atexit.register(shutil.rmtree, folder, True)
        self._local = type(manager)(folder, keep=manager.keep)

    def __getattr__(self, name: str):
        return getattr(self._local, name)


def chief_writes(manager):
    """`manager` on the chief; on other hosts a stand-in that writes in a private folder."""
    return manager if _PLAN.is_chief else _NonChiefCheckpoints(manager)

