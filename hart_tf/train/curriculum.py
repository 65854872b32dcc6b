"""Sequence-length curriculum: the original's TrainSchedule as plain, testable logic."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Curriculum:
    """Grows the training sequence length when the IoU is good enough.

    The threshold falls linearly from `threshold` at the first length to
    `threshold - threshold_decrease` at the last (the original's
    `time_increase_threshold`); a length is left only after `min_epochs` epochs at it
    (`min_epochs_per_timestep`), at a promotion check, which comes every `check_every`
    epochs at a length (the original checks when it logs, every `log_every_n_epochs=3`
    epochs). `lengths` lists the lengths to step through (the original steps by one: start,
    start+1, ..., max).

    The original's TrainSchedule (13 epochs, checks every 3, counted from a promotion)
    first promotes 15 epochs into a length; so does this with `min_epochs=13,
    check_every=3`. Two differences of granularity: the original checks mid-epoch, one
    step into an epoch at its first length (its first check is at step 1), where it can
    leave after 12 epochs and a step, and its checks are at least 500 and at most 100,000
    steps apart (neither bound binds on KITTI at batch 10); here checks come at epoch ends.

    Attributes:
        lengths: increasing sequence lengths.
        threshold: IoU needed to leave the first length.
        threshold_decrease: how much lower the threshold is at the last length.
        min_epochs: least epochs at a length before growing.
        check_every: epochs between promotion checks at a length.
        index: position in `lengths` (state).
        epochs_at_length: epochs trained at the current length (state).
    """

    lengths: tuple[int, ...]
    threshold: float = 0.70
    threshold_decrease: float = 0.05
    min_epochs: int = 13
    check_every: int = 1
    index: int = 0
    epochs_at_length: int = 0

    def __post_init__(self):
        self.lengths = tuple(int(v) for v in self.lengths)
        if not self.lengths or any(v < 2 for v in self.lengths):
            raise ValueError(f"curriculum lengths must be >= 2, got {self.lengths}")
        if any(b <= a for a, b in zip(self.lengths, self.lengths[1:], strict=False)):
            raise ValueError(f"curriculum lengths must increase, got {self.lengths}")

    @classmethod
    def from_range(cls, start: int, stop: int, step: int = 1, **kwargs) -> Curriculum:
        lengths = list(range(start, stop + 1, step))
        if lengths[-1] != stop:
            lengths.append(stop)
        return cls(tuple(lengths), **kwargs)

    @property
    def length(self) -> int:
        return self.lengths[self.index]

    @property
    def at_max(self) -> bool:
        return self.index == len(self.lengths) - 1

    def current_threshold(self) -> float:
        first, last = self.lengths[0], self.lengths[-1]
        if last == first:
            return self.threshold
        ratio = (self.length - first) / (last - first)
        return self.threshold - ratio * self.threshold_decrease

    def check_due(self) -> bool:
        """Whether the epoch now ending (not yet recorded) can promote, given its score: the
        trainer computes a costly score (`curriculum_score=test_mode`) only then."""
        done = self.epochs_at_length + 1
        return (not self.at_max and done >= self.min_epochs
                and done % self.check_every == 0)

    def end_epoch(self, score: float | None) -> bool:
        """Records one finished epoch with its promotion `score` (IoU; None where no check
        is due); returns True when the length grew."""
        due = self.check_due()
        self.epochs_at_length += 1
        if due and score is not None and score >= self.current_threshold():
            self.index += 1
            self.epochs_at_length = 0
            return True
        return False

    def state(self) -> dict:
        return {"index": self.index, "epochs_at_length": self.epochs_at_length,
                "lengths": list(self.lengths)}

    def restore(self, state: dict) -> None:
        if list(state["lengths"]) != list(self.lengths):
            raise ValueError(
                f"checkpoint curriculum lengths {state['lengths']} differ from "
                f"--curriculum_* flags {list(self.lengths)}"
            )
        self.index = int(state["index"])
        self.epochs_at_length = int(state["epochs_at_length"])


def collapse_warning(history: list[dict], fraction: float = 1 / 3,
                     floor: float = 0.2) -> str | None:
    """A one-line warning when the last epoch's train IoU has fallen below `fraction` of the
    best train IoU at the same sequence length (a best of at least `floor`), and the epoch
    before it at that length had not: said once as a run collapses, again only after it has
    recovered. Runs of the real-clip recipe fall to a train IoU near 0 and stay there for
    hundreds of updates (RESULTS.md, "Real footage"); nothing else says so.

    Args:
        history: per-epoch logs in order, each with "length", "epoch" and (train) "iou".

    Returns:
        The warning, or None.
    """
    if not history or history[-1].get("iou") is None:
        return None
    length = history[-1].get("length")
    ious = [(h["iou"], h.get("epoch")) for h in history
            if h.get("length") == length and h.get("iou") is not None]

    def collapsed(i: int) -> tuple[bool, float, int | None]:
        """Whether epoch i of `ious` is below `fraction` of the best before it."""
        if i < 1:
            return False, 0.0, None
        best, epoch = max(ious[:i], key=lambda v: v[0])
        return best >= floor and ious[i][0] < fraction * best, best, epoch

    now, best, epoch = collapsed(len(ious) - 1)
    if not now or collapsed(len(ious) - 2)[0]:
        return None
    return (f"warning: train IoU fell to {ious[-1][0]:.3f} at T={length}, under "
            f"{fraction:.0%} of its best at this length ({best:.3f}, epoch {epoch}): the boxes "
            "may have lost their objects")
