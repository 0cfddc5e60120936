"""Teaching batch norm: what a teacher shows next to the library.

- tutorial: the older Gluon tutorial's network of bare NDArrays, corrected, and its training loop.
- legacy: the bug zoo, every mistake of the circulating copies kept as a small function or class,
  marked wrong.
- exercises: the chapter's five exercises, and the input-shift picture, as seeded experiments.
- report: their figures, and a report whose answers are chosen by the numbers measured.
"""
