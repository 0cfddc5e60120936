"""Timing contenders fairly: they take turns, round by round, so that a drift of the machine's
speed hits them alike, each round starting with the next contender, so that none always
follows the same one (another process's threads still spinning, a cache it filled), and each
figure is the median of its rounds."""
import statistics
import time

from mxnet import nd


class Local:
    """A contender in this process: step() queues one call, sync() waits for what is queued.
    `reps`, if given, replaces the calls per round the timing asks for (a slow contender)."""

    def __init__(self, step, sync=lambda: None, reps=None):
        self.step, self.sync, self.reps = step, sync, reps

    def warm(self):   # allocation, graph building
        for _ in range(3):
            self.step()
        self.sync()

    def round(self, reps):
        """Milliseconds per call over `reps` calls, after one untimed call that wakes the
        threads an idle moment put to sleep."""
        reps = self.reps or reps
        self.step()
        self.sync()
        start = time.perf_counter()
        for _ in range(reps):
            self.step()
        self.sync()
        return (time.perf_counter() - start) / reps * 1000


def mxnet_contender(step, reps=None):
    """A contender whose calls queue MXNet operators: each round waits for all of them."""
    return Local(step, nd.waitall, reps)


def interleaved(contenders, rounds, reps, warmed=False):
    """Median milliseconds per call of each contender (name -> an object with warm() and
    round(reps)), the contenders taking turns for `rounds` rounds of `reps` calls, after a
    warm-up (unless they are `warmed` already)."""
    for contender in contenders.values() if not warmed else ():
        contender.warm()
    names = list(contenders)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(contenders[name].round(reps))
    return {name: statistics.median(t) for name, t in times.items()}
