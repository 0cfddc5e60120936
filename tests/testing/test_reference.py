"""The reference is the yardstick, so it is checked on its own: against central finite
differences, and against the properties that define batch normalization."""
import numpy as np
import pytest

from gluon_bn import reference

ACC = np.longdouble


@pytest.mark.parametrize('shape', [(5, 3), (3, 2, 4, 3)])
def test_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1])
    dy = rng.normal(size=shape)
    eps = 1e-3

    def loss(x, gamma, beta):
        return np.sum(reference.train_forward(x, gamma, beta, eps, ACC)[0] * dy)

    def numeric_grad(f, a, h=1e-6):
        grad = np.zeros(a.shape, ACC)
        for i in np.ndindex(a.shape):
            up, down = a.astype(ACC), a.astype(ACC)
            up[i] += h
            down[i] -= h
            grad[i] = (f(up) - f(down)) / (2 * h)
        return grad

    dx, dgamma, dbeta = reference.train_backward(dy, x, gamma, eps, ACC)
    # Central differences in extended precision: truncation error ~h^2, rounding ~1e-19/h.
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(v, gamma, beta), x), atol=1e-9)
    np.testing.assert_allclose(dgamma, numeric_grad(lambda v: loss(x, v, beta), gamma), atol=1e-9)
    np.testing.assert_allclose(dbeta, numeric_grad(lambda v: loss(x, gamma, v), beta), atol=1e-9)


def test_train_output_is_standardized_per_channel():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3, 5, 5)) * [[[[1]], [[5]], [[0.1]]]] + 7
    y, mean, var = reference.train_forward(x, np.ones(3), np.zeros(3), 0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-12)   # biased: divides by m


def test_predict_with_the_batch_statistics_equals_train():
    rng = np.random.default_rng(3)
    x, gamma, beta = rng.normal(size=(16, 4)), rng.normal(size=4), rng.normal(size=4)
    y, mean, var = reference.train_forward(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(reference.predict(x, gamma, beta, mean, var, 1e-5), y, rtol=1e-14)


def test_update_running_is_an_exponential_moving_average():
    np.testing.assert_allclose(reference.update_running([0.0, 1.0], [10.0, 3.0], 0.9), [1.0, 1.2])
