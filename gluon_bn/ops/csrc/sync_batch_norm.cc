// A batch norm whose statistics come from several devices (SyncBatchNorm), in three operators:
//
// gluon_bn_moments: data -> (3, C) float64, rows count, mean and M2 (the sum of squared
//   deviations from the mean) per channel, two passes summed in a wider type.
//   Backward: x gets d_mean / count + 2 * d_M2 * (x - mean).
// gluon_bn_combine: the moments of every device (copied to this one) -> (2, C) float64, rows
//   mean and biased variance of the whole batch: Chan et al.'s combination in long double,
//   M2 = sum M2_i + sum n_i (mean_i - mean)^2, over the devices in a fixed order, so every
//   device gets the same bits. Backward: device i's moments get
//   d mean_i = n_i / n * (d_mean + 2 (mean_i - mean) d_var) and d M2_i = d_var / n.
// gluon_bn_normalize: data, gamma, beta, stats, running_mean (mutable), running_var (mutable)
//   -> y = gamma * (x - mean) / sqrt(var + eps) + beta; the running statistics are updated in
//   place. Backward: dx = gamma / std * dy, and this device's share of the gradients of mean
//   and variance, which MXNet's autograd carries back through gluon_bn_combine and the copies
//   to every device's gluon_bn_moments: the whole-batch closed form, assembled from its parts.
// Attributes: axis (moments, normalize); eps, momentum, fix_gamma (normalize); num_devices
// (combine).

#include <cmath>
#include <string>
#include <vector>

#include "common.h"

using namespace mxnet::ext;
using namespace gluon_bn;

namespace {

int axis_of(const AttrMap& a) { return Attrs(a).axis; }

// ---- gluon_bn_moments ----------------------------------------------------------------------

template <typename T>
MXReturnValue moments_forward(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  MXTensor& data = (*inputs)[0];
  Layout l(data.shape, axis_of(attrs));
  const T* x = data.data<T>();
  double* count = (*outputs)[0].data<double>();
  double* mean = count + l.C;
  double* m2 = mean + l.C;
  std::vector<Acc> mu, sq;
  two_pass_moments(l, x, &mu, &sq);
  const Acc n = static_cast<Acc>(l.per_channel());
  for (int64_t c = 0; c < l.C; ++c) {
    count[c] = static_cast<double>(n);
    mean[c] = static_cast<double>(mu[c]);
    m2[c] = static_cast<double>(sq[c]);
  }
  return MX_SUCCESS;
}

// Backward inputs: d moments; data; moments. Output: d data.
template <typename T>
MXReturnValue moments_backward(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                               std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  std::vector<MXTensor>& in = *inputs;
  Layout l(in[1].shape, axis_of(attrs));
  const double* d_mean = in[0].data<double>() + l.C;
  const double* d_m2 = d_mean + l.C;
  const T* x = in[1].data<T>();
  const double* mean = in[2].data<double>() + l.C;
  T* dx = (*outputs)[0].data<T>();
  const Acc n = static_cast<Acc>(l.per_channel());
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    for_each_value(l, c0, c1, [&](int64_t c, int64_t i) {
      dx[i] = static_cast<T>(d_mean[c] / n + 2 * static_cast<Acc>(d_m2[c]) * (x[i] - mean[c]));
    });
  });
  return MX_SUCCESS;
}

MXReturnValue moments_fwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs, const OpResource&) {
  const int dtype = (*inputs)[0].dtype;
  return dispatch(dtype, dtype, [&](auto t, auto) {
    return moments_forward<decltype(t)>(attrs, inputs, outputs);
  });
}

MXReturnValue moments_bwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs, const OpResource&) {
  const int dtype = (*inputs)[1].dtype;
  return dispatch(dtype, dtype, [&](auto t, auto) {
    return moments_backward<decltype(t)>(attrs, inputs, outputs);
  });
}

MXReturnValue moments_type(const AttrMap&, std::vector<int>* in_types,
                           std::vector<int>* out_types) {
  (*out_types)[0] = kFloat64;
  return supported_dtype("gluon_bn_moments", (*in_types)[0]) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue moments_shape(const AttrMap& attrs, std::vector<std::vector<unsigned int>>* in_shapes,
                            std::vector<std::vector<unsigned int>>* out_shapes) {
  unsigned int channels;
  if (!channels_on_axis("gluon_bn_moments", (*in_shapes)[0], axis_of(attrs), &channels))
    return MX_FAIL;
  (*out_shapes)[0] = {3, channels};
  return MX_SUCCESS;
}

// ---- gluon_bn_combine ----------------------------------------------------------------------

int num_devices_of(const AttrMap& a) { return Attrs(a).num_devices; }

// Whole-batch count, mean and M2 from each device's moments, in long double.
struct Totals {
  std::vector<long double> count, mean, m2;
};

Totals combine_moments(const std::vector<const double*>& moments, int64_t C) {
  Totals t{std::vector<long double>(C, 0), std::vector<long double>(C, 0),
           std::vector<long double>(C, 0)};
  for (const double* m : moments)
    for (int64_t c = 0; c < C; ++c) {
      t.count[c] += m[c];
      t.mean[c] += static_cast<long double>(m[c]) * m[C + c];
    }
  for (int64_t c = 0; c < C; ++c) t.mean[c] /= t.count[c];
  for (const double* m : moments)
    for (int64_t c = 0; c < C; ++c) {
      const long double d = m[C + c] - t.mean[c];
      t.m2[c] += m[2 * C + c] + m[c] * d * d;
    }
  return t;
}

std::vector<const double*> moments_of(std::vector<MXTensor>& tensors, int first, int count) {
  std::vector<const double*> out;
  for (int i = first; i < first + count; ++i) out.push_back(tensors[i].data<double>());
  return out;
}

MXReturnValue combine_fwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs, const OpResource&) {
  const int n = num_devices_of(attrs);
  const int64_t C = (*inputs)[0].shape[1];
  const Totals t = combine_moments(moments_of(*inputs, 0, n), C);
  double* stats = (*outputs)[0].data<double>();
  for (int64_t c = 0; c < C; ++c) {
    stats[c] = static_cast<double>(t.mean[c]);
    stats[C + c] = static_cast<double>(t.m2[c] / t.count[c]);
  }
  return MX_SUCCESS;
}

// Backward inputs: d stats; the n moments; stats. Outputs: the n moments' gradients.
MXReturnValue combine_bwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs, const OpResource&) {
  const int n = num_devices_of(attrs);
  const int64_t C = (*inputs)[1].shape[1];
  const double* d_mean = (*inputs)[0].data<double>();
  const double* d_var = d_mean + C;
  const std::vector<const double*> moments = moments_of(*inputs, 1, n);
  const Totals t = combine_moments(moments, C);
  for (int i = 0; i < n; ++i) {
    const double* m = moments[i];
    double* d = (*outputs)[i].data<double>();
    for (int64_t c = 0; c < C; ++c) {
      const long double share = m[c] / t.count[c];
      d[c] = 0;
      d[C + c] = static_cast<double>(share * (d_mean[c] + 2 * (m[C + c] - t.mean[c]) * d_var[c]));
      d[2 * C + c] = static_cast<double>(d_var[c] / t.count[c]);
    }
  }
  return MX_SUCCESS;
}

MXReturnValue combine_parse(const AttrMap& attrs, int* num_inputs, int* num_outputs) {
  *num_inputs = num_devices_of(attrs);
  *num_outputs = 1;
  return MX_SUCCESS;
}

MXReturnValue combine_type(const AttrMap&, std::vector<int>* in_types,
                           std::vector<int>* out_types) {
  for (int& t : *in_types) t = kFloat64;
  (*out_types)[0] = kFloat64;
  return MX_SUCCESS;
}

MXReturnValue combine_shape(const AttrMap&, std::vector<std::vector<unsigned int>>* in_shapes,
                            std::vector<std::vector<unsigned int>>* out_shapes) {
  const std::vector<unsigned int>& first = (*in_shapes)[0];
  for (const auto& s : *in_shapes)
    if (s.size() != 2 || s[0] != 3 || s != first) {
      error_message("gluon_bn_combine") << "every input must be moments of shape (3, C)";
      return MX_FAIL;
    }
  (*out_shapes)[0] = {2, first[1]};
  return MX_SUCCESS;
}

// ---- gluon_bn_normalize --------------------------------------------------------------------

enum Input { kData, kGamma, kBeta, kStats, kRunningMean, kRunningVar, kNumInputs };

template <typename T>
MXReturnValue normalize_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  std::vector<MXTensor>& in = *inputs;
  Layout l(in[kData].shape, attrs.axis);
  const T* x = in[kData].data<T>();
  const T* gamma = in[kGamma].data<T>();
  const T* beta = in[kBeta].data<T>();
  const double* mean = in[kStats].data<double>();
  const double* var = mean + l.C;
  T* running_mean = in[kRunningMean].data<T>();
  T* running_var = in[kRunningVar].data<T>();
  T* y = (*outputs)[0].data<T>();
  const Acc mom = static_cast<Acc>(attrs.momentum);
  std::vector<Acc> scale(l.C);
  for (int64_t c = 0; c < l.C; ++c) {
    const Acc inv_std = inverse_std(static_cast<Acc>(var[c]), attrs.eps);
    scale[c] = scale_of(gamma[c], inv_std, attrs.fix_gamma);
    running_mean[c] = moving_average(running_mean[c], static_cast<Acc>(mean[c]), mom);
    running_var[c] = moving_average(running_var[c], static_cast<Acc>(var[c]), mom);
  }
  affine(l, x, mean, scale, beta, y);
  return MX_SUCCESS;
}

// Backward inputs: dy; the 6 inputs; the output. Outputs: gradients of the 6 inputs.
template <typename T>
MXReturnValue normalize_backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  std::vector<MXTensor>& in = *inputs;
  MXTensor* fwd_in = &in[1];
  Layout l(fwd_in[kData].shape, attrs.axis);
  const T* dy = in[0].data<T>();
  const T* x = fwd_in[kData].data<T>();
  const T* gamma = fwd_in[kGamma].data<T>();
  const double* mean = fwd_in[kStats].data<double>();
  const double* var = mean + l.C;
  std::vector<MXTensor>& out = *outputs;
  T* dx = out[kData].data<T>();
  T* dgamma = out[kGamma].data<T>();
  T* dbeta = out[kBeta].data<T>();
  double* d_mean = out[kStats].data<double>();
  double* d_var = d_mean + l.C;

  std::vector<Acc> inv_std(l.C), k(l.C), sum_dy(l.C, 0), sum_dy_xhat(l.C, 0);
  for (int64_t c = 0; c < l.C; ++c) {
    inv_std[c] = inverse_std(static_cast<Acc>(var[c]), attrs.eps);
    k[c] = scale_of(gamma[c], inv_std[c], attrs.fix_gamma);
  }
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    channel_sums2(l, c0, c1, [&](int64_t c, int64_t i) {
      const Acc d = dy[i];
      return Pair<Acc>{d, d * ((x[i] - mean[c]) * inv_std[c])};
    }, sum_dy.data(), sum_dy_xhat.data());
    for_each_value(l, c0, c1, [&](int64_t c, int64_t i) { dx[i] = static_cast<T>(k[c] * dy[i]); });
  });
  // y = k * (x - mean) + beta with k = gamma / sqrt(var + eps):
  // dy/dmean = -k, dy/dvar = -k * x_hat * inv_std / 2.
  for (int64_t c = 0; c < l.C; ++c) {
    dgamma[c] = attrs.fix_gamma ? T(0) : static_cast<T>(sum_dy_xhat[c]);
    dbeta[c] = static_cast<T>(sum_dy[c]);
    d_mean[c] = static_cast<double>(-k[c] * sum_dy[c]);
    d_var[c] = static_cast<double>(-k[c] * inv_std[c] * sum_dy_xhat[c] / 2);
  }
  zero(&out[kRunningMean]);
  zero(&out[kRunningVar]);
  return MX_SUCCESS;
}

MXReturnValue normalize_fwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource&) {
  Attrs a(attrs);
  const int dtype = (*inputs)[kData].dtype;
  return dispatch(dtype, dtype, [&](auto t, auto) {
    return normalize_forward<decltype(t)>(a, inputs, outputs);
  });
}

MXReturnValue normalize_bwd(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource&) {
  Attrs a(attrs);
  const int dtype = (*inputs)[1 + kData].dtype;
  return dispatch(dtype, dtype, [&](auto t, auto) {
    return normalize_backward<decltype(t)>(a, inputs, outputs);
  });
}

MXReturnValue normalize_type(const AttrMap&, std::vector<int>* in_types,
                             std::vector<int>* out_types) {
  const int dtype = (*in_types)[kData];
  for (int i : {kGamma, kBeta, kRunningMean, kRunningVar}) (*in_types)[i] = dtype;
  (*in_types)[kStats] = kFloat64;
  (*out_types)[0] = dtype;
  return supported_dtype("gluon_bn_normalize", dtype) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue normalize_shape(const AttrMap& attrs,
                              std::vector<std::vector<unsigned int>>* in_shapes,
                              std::vector<std::vector<unsigned int>>* out_shapes) {
  unsigned int channels;
  if (!channels_on_axis("gluon_bn_normalize", (*in_shapes)[kData], axis_of(attrs), &channels))
    return MX_FAIL;
  for (int i : {kGamma, kBeta, kRunningMean, kRunningVar})
    if (!per_channel("gluon_bn_normalize", i, channels, &(*in_shapes)[i])) return MX_FAIL;
  (*in_shapes)[kStats] = {2, channels};
  (*out_shapes)[0] = (*in_shapes)[kData];
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(gluon_bn_moments)
    .setForward(moments_fwd, "cpu")
    .setBackward(moments_bwd, "cpu")
    .setParseAttrs(arity<1, 1>)
    .setInferType(moments_type)
    .setInferShape(moments_shape);

REGISTER_OP(gluon_bn_combine)
    .setForward(combine_fwd, "cpu")
    .setBackward(combine_bwd, "cpu")
    .setParseAttrs(combine_parse)
    .setInferType(combine_type)
    .setInferShape(combine_shape);

REGISTER_OP(gluon_bn_normalize)
    .setForward(normalize_fwd, "cpu")
    .setBackward(normalize_bwd, "cpu")
    .setParseAttrs(arity<kNumInputs, 1>)
    .setInferType(normalize_type)
    .setInferShape(normalize_shape)
    .setMutateInputs(writes_inputs<kRunningMean, kRunningVar>);
