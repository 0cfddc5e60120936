"""Rerun d2lzh chapters as published, offline, each in a Jupyter kernel of its own.

    python scripts/run_chapter.py chapter_convolutional-neural-networks/batch-norm.md
    python scripts/run_chapter.py ../shared/d2l-zh-v1 --epochs 1 --max-batches 3 --gpus-on-cpu 2

A chapter is the book's markdown source (code in fences opened by ```{.python .input}) or a
Jupyter notebook; a folder stands for every chapter in it. Each chapter runs cell by cell in a
fresh IPython kernel, in its own folder, as Jupyter runs it: magics, `!commands` and the display
of a cell's last value are IPython's. Fashion-MNIST comes from local, verified files
(gluon_bn.compat), whichever way the chapter asks for it. What the options change is announced
once, and again in each cell where it takes effect. A `!command` whose program is not installed
here, or a magic IPython does not know, is skipped with a notice naming the line.

At the end a table gives each chapter's result (passed, or the cell that failed and why), the
lines skipped, the figures saved and the seconds taken; the exit status is 1 if any failed.
"""
import argparse
import os
import sys

from gluon_bn import chapters, cli, files


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('paths', nargs='+', metavar='PATH',
                        help='chapters (.md, .ipynb) or folders of them')
    parser.add_argument('--epochs', type=cli.positive(int),
                        help="train for N epochs: overrides num_epochs and hard-coded epoch loops")
    parser.add_argument('--max-batches', type=cli.positive(int), metavar='N',
                        help="every pass over a data loader stops after N batches")
    parser.add_argument('--ctx', type=cli.context, help="what d2lzh.try_gpu() returns (cpu, gpu:1)")
    parser.add_argument('--gpus-on-cpu', type=cli.positive(int), metavar='N',
                        help="mx.gpu(i) is mx.cpu(i) for i < N: GPU chapters on a CPU")
    cli.add_data_dir(parser)
    parser.add_argument('--figures', metavar='DIR',
                        help="where figures are saved (default: figures/ beside the report or "
                             "notebook, else in the current folder)")
    parser.add_argument('--report', metavar='FILE',
                        help='write the summary to FILE.json or FILE.md')
    parser.add_argument('--notebook', metavar='OUT',
                        help='save each executed notebook: OUT.ipynb for one chapter, else a '
                             'folder')
    args = parser.parse_args(argv)
    if args.report and not args.report.endswith(('.json', '.md')):
        parser.error(f"--report: expected a .json or .md file name, got {args.report!r}")
    if args.data_dir and not os.path.isdir(args.data_dir):
        parser.error(f"--data-dir: {args.data_dir} is not a folder")
    try:
        args.chapters = chapters.find_chapters(args.paths)
    except chapters.ChapterError as error:
        parser.error(str(error))
    if args.notebook and args.notebook.endswith('.ipynb') and len(args.chapters) > 1:
        parser.error("--notebook: a single .ipynb file holds one chapter; give a folder")
    if args.figures is None:
        beside = args.report or args.notebook
        args.figures = os.path.join(os.path.dirname(beside) if beside else '', 'figures')
    return args


def announce(settings):
    if settings.epochs is not None:
        print(f"[run_chapter] --epochs {settings.epochs}: num_epochs, and any loop over epochs "
              f"with a fixed count, run {settings.epochs} epoch(s)")
    if settings.max_batches is not None:
        print(f"[run_chapter] --max-batches {settings.max_batches}: every pass over a data loader "
              f"stops after {settings.max_batches} batch(es); losses and accuracies cover only "
              f"those")
    if settings.gpus_on_cpu is not None:
        n = settings.gpus_on_cpu
        print(f"[run_chapter] --gpus-on-cpu {n}: mx.gpu(i) is mx.cpu(i) for i < {n}, and d2lzh "
              f"sees {n} GPU(s). They share this machine's CPU cores, so the chapter's results "
              f"hold "
              f"but its timings show no multi-GPU speed-up")
    if settings.ctx is not None:
        print(f"[run_chapter] --ctx {settings.ctx}: d2lzh.try_gpu() returns it")


def notebook_path(args, file, name):
    if not args.notebook:
        return None
    if args.notebook.endswith('.ipynb'):
        return args.notebook
    return os.path.join(args.notebook, os.path.splitext(name)[0] + '.ipynb')


def main(argv=None):
    args = parse_args(argv)
    settings = chapters.Settings(args.epochs, args.max_batches, args.ctx, args.gpus_on_cpu,
                                 args.data_dir)
    announce(settings)
    results = []
    try:
        for file, name in args.chapters:
            print(f"\n=== {name}", flush=True)
            figures = os.path.join(args.figures, os.path.splitext(name)[0])
            results.append(chapters.run_chapter(file, settings, name=name, figures_dir=figures,
                                                notebook_path=notebook_path(args, file, name)))
            if results[-1].interrupted:
                break
    except KeyboardInterrupt:
        pass
    if len(results) < len(args.chapters):
        print(f"\n[run_chapter] interrupted: {len(args.chapters) - len(results)} chapter(s) "
              f"not run", file=sys.stderr)
    print('\n' + chapters.summary_table(results))
    if args.report:
        write = chapters.json_report if args.report.endswith('.json') else chapters.markdown_report
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        files.write_atomically(args.report, write(results, settings).encode('utf-8'))
        print(f"[run_chapter] report written to {args.report}")
    if len(results) < len(args.chapters) or any(r.interrupted for r in results):
        sys.exit(130)
    if not all(r.passed for r in results):
        sys.exit(1)


if __name__ == '__main__':
    main()
