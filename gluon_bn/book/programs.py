"""The book's own BN-LeNet runs, reproduced offline with the corrected batch norm.

`chapter_bn`: the batch-norm chapter (d2lzh) as published, from-scratch BatchNorm then
nn.BatchNorm: lr 1.0, batch 256, SGD, Xavier, 5 epochs, printing d2lzh's lines.
What was wrong in the copy of the chapter that circulates, and what changed:
- `if not autograd.is_training:` never calls the function, which is always truthy, so
  prediction normalized with the statistics of the batch at hand (a single sample after a dense
  layer comes out as beta). gluon_bn.batch_norm calls it.
- `self.param.get(...)` raises AttributeError: the layer has `self.params`.
- `BatchNorm(6, nums_dims=4)` misspells num_dims (accepted here, with a DeprecationWarning).
- The moving statistics were plain NDArrays starting at 0: save_parameters lost them, and the
  zero variance scaled early predictions by sqrt(10). Here they are Parameters starting at 0
  and 1, like nn.BatchNorm's.
- d2lzh.load_data_fashion_mnist cannot find the data offline; gluon_bn's loader reads the
  local, verified files, and trains from one preloaded NDArray instead of per-sample ToTensor.

`pytorch_settings`: the PyTorch ports' settings, in Gluon, to show how BN-LeNet's test accuracy
moves from epoch to epoch: the from-scratch BatchNorm with SGD at lr 1.0 for 10 epochs, then
nn.BatchNorm with Adam at lr 0.001 for 5 (the PyTorch log's test accuracy swings between 0.69 and
0.86 while the training accuracy climbs). Test accuracy uses the moving averages, so it swings
more than the training accuracy.
"""
import dataclasses

from ..train import Recipe, Run
from ..train.data import load_arrays

CHAPTER_RUNS = [('from-scratch BatchNorm', Recipe(bn='scratch')),
                ('nn.BatchNorm', Recipe(bn='gluon'))]
PYTORCH_RUNS = [('from-scratch BatchNorm, SGD lr 1.0, 10 epochs', Recipe(bn='scratch', epochs=10)),
                ('nn.BatchNorm, Adam lr 0.001, 5 epochs',
                 Recipe(bn='gluon', optimizer='adam', lr=0.001))]


def accuracies(history):
    return ', '.join(f"{r['test_acc']:.3f}" for r in history)


def chapter_bn(epochs=5, data_dir=None, ctx=None):
    """The chapter's two runs, printing d2lzh's lines; returns their histories."""
    arrays = load_arrays(data_dir)
    histories = []
    for title, recipe in CHAPTER_RUNS:
        print(f'# LeNet with {title}')
        history = Run(dataclasses.replace(recipe, epochs=epochs), arrays, ctx).fit()
        print(f'# test acc per epoch: {accuracies(history)}')
        histories.append(history)
    return histories


def pytorch_settings(data_dir=None, ctx=None):
    """The PyTorch ports' two runs, each followed by the range of its test accuracy and the
    number of epochs where it fell; returns their histories."""
    arrays = load_arrays(data_dir)
    histories = []
    for title, recipe in PYTORCH_RUNS:
        print(f'# {title}')
        history = Run(recipe, arrays, ctx).fit()
        test = [r['test_acc'] for r in history]
        drops = sum(b < a for a, b in zip(test, test[1:]))
        print(f"# test acc {min(test):.3f} to {max(test):.3f}, fell in {drops} of "
              f"{len(test) - 1} epochs: {accuracies(history)}")
        histories.append(history)
    return histories
