"""Print the largest errors of every batch-norm path against the reference, per LeNet shape.

    python scripts/accuracy_report.py [--dtype float32 float64] [--steps 3]

Each case trains for a few steps (forward, backward) and then predicts, as the regression suite
does; the reference runs in extended precision. Columns are absolute errors.
"""
import argparse

from gluon_bn.testing import ADAPTERS, FIELDS, make_case, max_errors, reference_result, run

LENET_SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dtype', nargs='+', default=['float32', 'float64'],
                        choices=['float32', 'float64'])
    parser.add_argument('--steps', type=int, default=3)
    args = parser.parse_args()
    print(f"{'shape':18} {'dtype':8} {'implementation':13} "
          + ' '.join(f'{name:>13}' for name in FIELDS))
    for shape in LENET_SHAPES:
        for dtype in args.dtype:
            case = make_case(shape, dtype, steps=args.steps)
            truth = reference_result(case)
            for name, adapter in ADAPTERS.items():
                errors = max_errors(run(adapter, case), truth)
                print(f'{str(shape):18} {dtype:8} {name:13} '
                      + ' '.join(f'{errors[k]:13.2e}' for k in FIELDS))


if __name__ == '__main__':
    main()
