"""Figures and a markdown report from gluon_bn.teach.exercises' measurements; every sentence of
an answer that states a result is chosen by the numbers measured. The figures are drawn without
pyplot (gluon_bn.utils.figures), so importing this module changes no matplotlib setting."""
from matplotlib.ticker import MaxNLocator

from ..utils.figures import figure, image


TRAINS = 0.5   # a run "trains" if its final test accuracy is above this (chance is 0.1)


def test_acc(history):
    return [r['test_acc'] for r in history]


def final(history):
    return history[-1]['test_acc']


def png(fig):
    return image(fig, 'png', dpi=110)


def by_epoch(ax, **legend):
    """Whole epochs on the x axis, a light grid, the legend."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(**legend)


def curves(ax, named_histories, title):
    for name, history in named_histories:
        acc = test_acc(history)
        ax.plot(range(1, len(acc) + 1), acc, 'o-', label=name)
    ax.set(xlabel='epoch', ylabel='test accuracy', title=title, ylim=(0, 1))
    by_epoch(ax)


def figures(results, settings):
    """file name -> PNG bytes, one per exercise measured."""
    images = {}
    if '1' in results:
        r = results['1']
        fig = figure(figsize=(10, 4))
        left, right = fig.subplots(1, 2)
        curves(left, [(f"with bias ({r['1/bias=True']['parameters']} parameters)",
                       r['1/bias=True']['history']),
                      (f"without bias ({r['1/bias=False']['parameters']} parameters)",
                       r['1/bias=False']['history'])], 'BN-LeNet, bias before batch norm')
        layers = ['conv 1', 'conv 2', 'dense 1', 'dense 2']
        width = 0.38
        for k, (name, ratios) in enumerate(r['gradient ratio'].items()):
            right.bar([i + (k - 0.5) * width for i in range(4)], ratios, width, label=name)
        right.set(yscale='log', xticks=range(4), xticklabels=layers,
                  ylabel='max |grad bias| / max |grad weight|',
                  title='bias gradient, one batch')
        right.axhline(2 ** -24, color='grey', ls=':', label='float32 unit roundoff')
        right.legend(fontsize='small', loc='center right')
        images['exercise-1.png'] = png(fig)
    if '2' in results:
        r = results['2']
        fig = figure(figsize=(6, 4))
        ax = fig.subplots()
        for placement, label in (('none', 'LeNet without BN'), ('after_affine', 'with BN')):
            rates = [rate for rate in settings['rates'] if f"2/{placement}/lr={rate:g}" in r]
            ax.plot(rates, [final(r[f"2/{placement}/lr={rate:g}"]) for rate in rates], 'o-',
                    label=label)
        ax.axhline(0.1, color='grey', ls=':', label='chance')
        ax.set(xscale='log', xlabel='learning rate', ylabel='final test accuracy',
               title=f"after {settings['epochs']} epochs", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend()
        images['exercise-2.png'] = png(fig)
    if '3' in results:
        fig = figure(figsize=(6, 4))
        ax = fig.subplots()
        names = {'after_affine': 'after conv/dense (book)', 'after_activation':
                 'after the sigmoid', 'conv_only': 'conv layers only',
                 'dense_only': 'dense layers only', 'none': 'no batch norm'}
        curves(ax, [(names[p], h) for p, h in results['3'].items()], 'where batch norm goes')
        images['exercise-3.png'] = png(fig)
    if '4' in results:
        r = results['4']
        fig = figure(figsize=(6, 4))
        ax = fig.subplots()
        curves(ax, [('gamma, beta learned', r['4/frozen=False']['history']),
                    ('gamma, beta frozen (scale=False, center=False)',
                     r['4/frozen=True']['history'])],
               'learned or frozen gamma and beta')
        images['exercise-4.png'] = png(fig)
    if '5' in results:
        r = results['5']
        fig = figure(figsize=(6, 4))
        ax = fig.subplots()
        curves(ax, [(name.split('/')[1], v['history']) for name, v in r.items()],
               'use_global_stats=True while training')
        images['exercise-5.png'] = png(fig)
    if 'shift' in results:
        r = results['shift']
        fig = figure(figsize=(10, 4))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (key, title) in zip(axes, (('shift/none', 'without batch norm'),
                                          ('shift/after_affine', 'with batch norm'))):
            bands = list(zip(*r[key]['quantiles']))   # per quantile, over epochs
            epochs = range(len(bands[0]))
            ax.fill_between(epochs, bands[0], bands[4], alpha=0.2, label='5-95 %')
            ax.fill_between(epochs, bands[1], bands[3], alpha=0.4, label='25-75 %')
            ax.plot(epochs, bands[2], 'k-', label='median')
            ax.set(xlabel='epochs trained', title=title,
                   ylabel='input of the first sigmoid (test batch)')
            by_epoch(ax)
        images['shift.png'] = png(fig)
    if 'precise' in results:
        fig = figure(figsize=(6, 4))
        ax = fig.subplots()
        for k, (key, history) in enumerate(results['precise'].items()):
            epochs = range(1, len(history) + 1)
            seed = key.split('=')[1]
            ax.plot(epochs, [r['test_acc_moving'] for r in history], 'o--', color=f"C{k}",
                    alpha=0.6, label=f"seed {seed}, moving averages")
            ax.plot(epochs, [r['test_acc'] for r in history], 's-', color=f"C{k}",
                    label=f"seed {seed}, exact statistics")
        ax.set(xlabel='epoch', ylabel='test accuracy', title='running statistics: moving '
               'average or exact')
        by_epoch(ax, fontsize='small')
        images['precise.png'] = png(fig)
    return images


def swing(accuracies):
    """Mean absolute change of test accuracy from one epoch to the next."""
    steps = [abs(b - a) for a, b in zip(accuracies, accuracies[1:])]
    return sum(steps) / len(steps) if steps else 0.0


def report(results, settings, images, seconds):
    lines = ['# The batch-norm chapter\'s exercises, measured', '',
             f"Settings: {settings['epochs']} epochs, "
             f"{settings['train_size'] or 60000} training images, learning rate "
             f"{settings['lr']:g} (exercise 2 sweeps it), batch 256, seed {settings['seed']}; "
             f"test accuracy on the 10,000 test images. Measured in {seconds:.0f} s.", '']
    if '1' in results:
        r = results['1']
        with_bias, without = r['1/bias=True'], r['1/bias=False']
        bn, plain = r['gradient ratio']['with BN'], r['gradient ratio']['without BN']
        difference = abs(final(with_bias['history']) - final(without['history']))
        lines += ['## 1. Can the bias before batch norm go?', '', '![](exercise-1.png)', '',
                  f"With the bias: {with_bias['parameters']} parameters, final test accuracy "
                  f"{final(with_bias['history']):.3f}; without: {without['parameters']}, "
                  f"{final(without['history']):.3f}. On one batch, the largest bias gradient "
                  f"is {max(bn):.1e} of the largest weight gradient with batch norm (a float32 "
                  f"unit roundoff is 6.0e-08), and {min(plain):.2f} to {max(plain):.2f} "
                  f"without it.", '']
        if max(bn) < 1e-4 <= min(plain):
            lines.append("Batch norm subtracts the batch mean of each channel, and a bias adds "
                         "the same constant to every value of its channel, so it cancels: its "
                         "gradient is zero up to rounding, and the layer is the same function "
                         "without it. Removing it saves parameters"
                         + (" and the accuracy stays within "
                            f"{difference:.3f}." if difference < 0.02 else
                            f"; the accuracy moved by {difference:.3f} here, more than the "
                            "book's answer leads one to expect (runs differ by their random "
                            "draws too)."))
        else:
            lines.append("The bias gradient did not vanish with batch norm here, which "
                         "contradicts the book's answer: look at the figure.")
        lines.append('')
    if '2' in results:
        r = results['2']
        best = {}
        for placement in ('none', 'after_affine'):
            good = [rate for rate in settings['rates']
                    if f"2/{placement}/lr={rate:g}" in r
                    and final(r[f"2/{placement}/lr={rate:g}"]) > TRAINS]
            best[placement] = max(good) if good else None
        table = ['| learning rate | ' + ' | '.join(f"{rate:g}" for rate in settings['rates'])
                 + ' |', '| --- |' + ' --- |' * len(settings['rates'])]
        for placement, label in (('none', 'without BN'), ('after_affine', 'with BN')):
            table.append(f"| {label} | " + ' | '.join(
                f"{final(r[f'2/{placement}/lr={rate:g}']):.3f}" for rate in settings['rates'])
                + ' |')
        def says(rate):
            return f"{rate:g}" if rate is not None else 'none of them'
        lines += ['## 2. Larger learning rates', '', '![](exercise-2.png)', '', *table, '',
                  f"The largest learning rate that still trains (test accuracy above {TRAINS}): "
                  f"{says(best['none'])} without batch norm, {says(best['after_affine'])} with "
                  "it.", '']
        if (best['after_affine'] or 0) > (best['none'] or 0):
            lines.append("Batch norm keeps each layer's inputs at the same scale whatever the "
                         "weights do, so larger steps do not blow the activations up or "
                         "saturate the sigmoids: the network trains at learning rates where "
                         "the plain LeNet does not, as the book says.")
        else:
            lines.append("Here batch norm did not allow a larger learning rate than the plain "
                         "LeNet, which contradicts the book's answer (few epochs and a subset "
                         "of the data may hide it; try --full).")
        lines.append('')
    if '3' in results:
        r = results['3']
        ranked = sorted(r.items(), key=lambda item: -final(item[1]))
        lines += ['## 3. Where batch norm goes', '', '![](exercise-3.png)', '',
                  '| placement | final test accuracy |', '| --- | --- |']
        lines += [f"| {p} | {final(h):.3f} |" for p, h in ranked]
        lines += ['', f"Best here: {ranked[0][0]}; worst: {ranked[-1][0]}. "
                  + ("Every placement beats no batch norm at all." if ranked[-1][0] == 'none'
                     else "Not every placement beats the network without batch norm.") + '']
        lines.append('')
    if '4' in results:
        r = results['4']
        learned, frozen = r['4/frozen=False'], r['4/frozen=True']
        lines += ['## 4. Frozen gamma and beta', '', '![](exercise-4.png)', '',
                  f"Learned: final test accuracy {final(learned['history']):.3f}, gamma moved "
                  f"up to {max(learned['moved']['gamma']):.3f} from 1 and beta up to "
                  f"{max(learned['moved']['beta']):.3f} from 0. Frozen: "
                  f"{final(frozen['history']):.3f}, gamma and beta moved "
                  f"{max(frozen['moved']['gamma'] + frozen['moved']['beta']):g}.", '',
                  "Without gamma and beta each layer's output is forced to mean 0 and variance "
                  "1 per channel; the next layer's weights can still rescale it, so in this "
                  "network the loss is "
                  + ("small" if abs(final(learned['history']) - final(frozen['history'])) < 0.02
                     else "visible") + " (accuracy difference "
                  f"{final(learned['history']) - final(frozen['history']):+.3f}).", '']
    if '5' in results:
        r = results['5']
        batch, global_, none = (r['5/batch statistics'], r['5/global statistics'],
                                r['5/no batch norm'])
        lines += ['## 5. Global statistics while training', '', '![](exercise-5.png)', '',
                  f"Final test accuracy: batch statistics {final(batch['history']):.3f}, "
                  f"use_global_stats=True {final(global_['history']):.3f}, no batch norm "
                  f"{final(none['history']):.3f}. The running statistics moved by up to "
                  f"{batch['running statistics moved']:.3f} with batch statistics and by "
                  f"{global_['running statistics moved']:g} with global ones.", '',
                  "With use_global_stats=True a layer normalizes every batch with its running "
                  "mean and variance, and those are only ever updated from batch statistics, "
                  "so they stay at 0 and 1: the layer is a fixed affine map (gamma x + beta), "
                  "batch norm's effect is gone, and the network trains "
                  + ("like the one without batch norm" if abs(final(global_['history'])
                                                               - final(none['history'])) < 0.05
                     else "differently from both, see the figure") + '.', '']
    if 'shift' in results:
        r = results['shift']
        spread = {k: [q[4] - q[0] for q in r[k]['quantiles']] for k in r}
        lines += ['## The inputs of the first sigmoid during training', '', '![](shift.png)',
                  '',
                  "Quantiles (5, 25, 50, 75, 95 %) of the values entering the first sigmoid on "
                  "a fixed test batch, after each epoch (in prediction mode). The 5-95 % width "
                  "went from " + ' to '.join(f"{w:.2f}" for w in spread['shift/none'][::max(
                      1, len(spread['shift/none']) - 1)]) + " without batch norm and from "
                  + ' to '.join(f"{w:.2f}" for w in spread['shift/after_affine'][::max(
                      1, len(spread['shift/after_affine']) - 1)]) + " with it.", '']
    if 'precise' in results:
        r = results['precise']
        pairs = [(e['test_acc'], e['test_acc_moving']) for h in r.values() for e in h]
        better = sum(exact > moving for exact, moving in pairs)
        gain = sum(exact - moving for exact, moving in pairs) / len(pairs)
        swings = {kind: sum(swing([e[kind] for e in h]) for h in r.values()) / len(r)
                  for kind in ('test_acc', 'test_acc_moving')}
        table = ['| seed | ' + ' | '.join(f"epoch {i}" for i in range(1, settings['epochs'] + 1))
                 + ' |', '| --- |' + ' --- |' * settings['epochs']]
        for key, h in r.items():
            table.append(f"| {key.split('=')[1]} | " + ' | '.join(
                f"{e['test_acc_moving']:.3f} / {e['test_acc']:.3f}" for e in h) + ' |')
        lines += ['## Beyond the chapter: exact statistics after each epoch', '',
                  '![](precise.png)', '',
                  "Test accuracy from the moving averages / from exact statistics over the whole "
                  "training subset, set after each epoch in the same run "
                  "(`gluon-bn train --precise-bn N`, `gluon_bn.update_bn_stats`):", '', *table,
                  '', f"The exact statistics scored higher in {better} of {len(pairs)} epochs, "
                  f"by {gain:+.3f} on average; test accuracy changed by {swings['test_acc']:.3f} "
                  f"from one epoch to the next with them, {swings['test_acc_moving']:.3f} with the "
                  "moving averages.", '']
        if gain > 0 and swings['test_acc'] < swings['test_acc_moving']:
            lines.append("The moving average mixes statistics of batches seen with older "
                         "weights; at this learning rate the weights move fast, so it lags the "
                         "network it normalizes for, and the test accuracy pays for it. "
                         "Statistics computed with the final weights remove that lag: "
                         "better and steadier.")
        elif gain > 0:
            lines.append("The exact statistics help on average, but the accuracy does not swing "
                         "less with them here: what swings is then the weights themselves.")
        else:
            lines.append("Here the moving averages did as well as exact statistics: they do not "
                         "lag the weights enough to matter in these runs.")
        lines.append('')
    lines += ['Figures: ' + ', '.join(images) + '.', '']
    return '\n'.join(lines)
