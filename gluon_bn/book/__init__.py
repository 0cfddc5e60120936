"""Rerunning the book: its own chapters, unmodified, offline, each in a Jupyter kernel.

- chapters: the runner (a chapter becomes a notebook, runs cell by cell, and is reported on).
- rerun: what changes inside the kernel (--epochs, --max-batches, --gpus-on-cpu, skipped shell
  escapes), each change announced where it takes effect; also context managers for plain Python.
- compat: d2lzh's own code offline (Gluon's FashionMNIST reads the verified local files).
- programs: the chapter's BN-LeNet runs reproduced with the corrected batch norm, and the
  PyTorch ports' settings.
"""
