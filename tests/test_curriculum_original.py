"""The original's curriculum (TrainSchedule of scripts/train_hart_kitti.py): promotion checks
every 3 epochs, >= 13 epochs at a length, on a test-mode score; epochs of all the augmented
training windows."""

from __future__ import annotations

import numpy as np
import pytest

from hart_tf.train.curriculum import Curriculum


def _original() -> Curriculum:
    return Curriculum.from_range(5, 30, threshold=0.70, threshold_decrease=0.05,
                                 min_epochs=13, check_every=3)


def _run(curriculum: Curriculum, score, epochs: int) -> list[int]:
    """Epochs spent at each length before it grew, for `score(length, epochs_done)`."""
    held, at = [], 0
    for _ in range(epochs):
        at += 1
        due = curriculum.check_due()
        length = curriculum.length
        if curriculum.end_epoch(score(length, at) if due else None):
            held.append(at)
            at = 0
    return held


def _original_schedule(score, epoch_batches: int, iterations: int) -> list[float]:
    """An iteration-level model of the original's TrainSchedule with a constant epoch size:
    the epoch counter counts epochs started at a length (a promotion mid-epoch resets it to 0
    for the rest of that epoch); a check at step 1 and then every 3 epochs of steps after the
    last check; promotion at a check when the score reaches the threshold and the counter is
    >= 13. Returns the epochs (steps / epoch_batches) spent at each length before it grew."""
    c = _original()
    held, counter, last_check, grown_at, step = [], 0, None, 0, 0
    while step < iterations:
        counter += 1  # a new epoch starts
        for _ in range(epoch_batches):
            step += 1
            if last_check is None or step >= last_check + 3 * epoch_batches:
                last_check = step
                done = (step - grown_at) / epoch_batches
                if (not c.at_max and counter >= 13
                        and score(c.length, done) >= c.current_threshold()):
                    c.index += 1
                    held.append(done)
                    counter, grown_at = 0, step
    return held


def test_thresholds_are_the_originals():
    c = _original()
    assert c.lengths == tuple(range(5, 31))
    for length, want in ((5, 0.70), (15, 0.70 - 0.05 * 10 / 25), (30, 0.65)):
        c.index = c.lengths.index(length)
        assert c.current_threshold() == pytest.approx(want)


def test_checks_come_every_3_epochs_from_13_on():
    c = _original()
    due = []
    for _ in range(1, 22):
        due.append(c.check_due())
        c.end_epoch(0.0 if due[-1] else None)  # never good enough
    assert [e for e, d in zip(range(1, 22), due, strict=True) if d] == [15, 18, 21]


def test_a_good_score_promotes_15_epochs_into_each_length():
    held = _run(_original(), lambda length, at: 1.0, 15 * 25 + 30)
    assert held == [15] * 25  # 5 -> 30 by one; none beyond the last length


def test_a_bad_score_holds_the_length_until_the_next_check():
    # Good only from the 16th epoch at a length: the check at 15 fails, 18 promotes.
    held = _run(_original(), lambda length, at: 0.9 if at >= 16 else 0.1, 18 * 3)
    assert held == [18, 18, 18]


def test_no_score_means_no_check():
    c = _original()
    for _ in range(14):
        assert not c.check_due()
        assert not c.end_epoch(None)
    assert c.check_due()
    assert not c.end_epoch(None)  # a due check without a score does not promote


@pytest.mark.parametrize("good_from", [0, 14, 16, 20, 31])
def test_matches_the_originals_schedule_after_the_first_length(good_from):
    """After the first length both promote at the same epochs into a length; at the first,
    the original's step-1 check lets it leave one step into epoch 13 (12 epochs + 1 step)
    where this leaves at the next check after 13 epochs (epoch 15)."""

    def score(length, done):
        return 1.0 if done > good_from else 0.0

    ours = _run(_original(), score, 400)
    theirs = _original_schedule(score, epoch_batches=40, iterations=400 * 40)
    n = min(len(ours), len(theirs))
    assert n >= 5
    np.testing.assert_allclose(ours[1:n], theirs[1:n])
    first = next(e for e in range(15, 100, 3) if e > good_from)
    assert ours[0] == first
    assert theirs[0] == pytest.approx(max(12 + 1 / 40, 3 * np.ceil((good_from - 1 / 40) / 3)
                                          + 1 / 40))


def test_state_round_trips_with_check_every():
    c = _original()
    for _ in range(16):
        c.end_epoch(1.0 if c.check_due() else None)
    again = _original()
    again.restore(c.state())
    assert (again.index, again.epochs_at_length) == (1, 1)
    assert not again.check_due()
