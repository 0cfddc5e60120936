"""The yardstick and the harness that measures every batch norm against it.

- reference: batch normalization in NumPy, small and obvious, in float64 or any NumPy dtype
  (`np.longdouble` to judge float64 results).
- adapters: every implementation driven through the same training steps and predictions
  (`run`), measured against the reference (`reference_result`, `max_errors`), with error bounds
  scaled to the terms each result is computed from (`term_magnitudes`).

Use it to regression-test a batch norm of your own against nn.BatchNorm.
"""
from . import reference
from .adapters import (ACC, ADAPTERS, APIS, FIELDS, Case, GluonBatchNorm, HybridAdapter,
                       HybridizedAdapter, LayerAdapter, ScratchBlock, ScratchFunction,
                       TextbookBlock, TextbookTutorialFunction, TutorialFunction, make_case,
                       array, array_api, max_errors, reference_result, run, run_split,
                       term_magnitudes)

__all__ = ['ACC', 'ADAPTERS', 'APIS', 'FIELDS', 'Case', 'GluonBatchNorm', 'HybridAdapter',
           'HybridizedAdapter', 'LayerAdapter', 'ScratchBlock', 'ScratchFunction',
           'TextbookBlock', 'TextbookTutorialFunction', 'TutorialFunction', 'array', 'array_api',
           'make_case', 'max_errors', 'reference', 'reference_result', 'run', 'run_split',
           'term_magnitudes']
