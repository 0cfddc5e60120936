// Batch normalization from scratch as an MXNet library operator (mx.library.load).
//
// Forward:  mean and biased variance per channel (two passes, summed in a wider type), then
//           y = gamma * (x - mean) / sqrt(var + eps) + beta, and, when training,
//           running = momentum * running + (1 - momentum) * batch statistic, in place.
// Backward: the closed form
//           dx = gamma / std * (dy - mean(dy) - x_hat * mean(dy * x_hat)),
//           dgamma = sum(dy * x_hat), dbeta = sum(dy).
// MXNet passes library operators no training flag, so the caller passes one as an input.
//
// Inputs:  data, gamma, beta, running_mean (mutable), running_var (mutable), training (the mode:
//          a float32 flag, or gluon_bn's probe (3, C) in the statistics' dtype; batch_statistics);
//          gamma, beta and the running statistics hold one value per channel, in any shape.
// Outputs: output, mean, inv_std (the last two are kept for the backward pass)
// Attributes: axis, eps, momentum, fix_gamma, use_global_stats, probe
// Types: float16, float32 or float64 data; gamma, beta and the running statistics of the
// data's type, or float32 for float16 data (as nn.BatchNorm keeps them after cast('float16'));
// sums in double (long double for float64).

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "common.h"

using namespace mxnet::ext;
using namespace gluon_bn;

// The one way to reach MXerrorMsgs' private list of messages: an explicit instantiation may
// name a private member, and the friend it defines hands the member pointer out.
namespace {
struct Messages {
  using type = std::vector<std::stringstream*> mxnet::ext::MXerrorMsgs::*;
  friend type member(Messages);
};
template <typename Tag, typename Tag::type M>
struct Reach {
  friend typename Tag::type member(Tag) { return M; }
};
template struct Reach<Messages, &mxnet::ext::MXerrorMsgs::messages>;
}  // namespace

void gluon_bn::forget_old_errors() {
  std::vector<std::stringstream*>& messages = mxnet::ext::MXerrorMsgs::get()->*member(Messages());
  for (std::stringstream* message : messages) delete message;
  messages.clear();
}

namespace {

enum Input { kData, kGamma, kBeta, kRunningMean, kRunningVar, kTraining, kNumInputs };
enum Output { kOut, kMean, kInvStd, kNumOutputs };

// gluon_bn's mode probe (ops.mode_flag, attribute probe=2): MXNet's BatchNorm applied to the
// rows -K, 0, K of every channel, with the layer's running statistics. While training it
// normalizes them by their own mean and variance, while predicting by the running ones; both
// results are computed here for the last channel, and the probe's nearer one says the mode.
// They could only meet if the running variance were within a rounding of 2 K^2 / 3 (7.2e8)
// and the running mean within a rounding of 0.
constexpr double kProbeRow = 32768, kProbeEps = 1e-5;

template <typename P>
bool probe_says_training(MXTensor& probe, const P* running_mean, const P* running_var) {
  const int64_t C = probe.size() / 3, c = C - 1;
  const P* value = probe.data<P>();
  const double own = std::sqrt(2 * kProbeRow * kProbeRow / 3 + kProbeEps);
  const double running = std::sqrt(static_cast<double>(running_var[c]) + kProbeEps);
  double off_training = 0, off_predicting = 0;   // relative distances, summed over the rows
  for (int j = 0; j < 3; ++j) {
    const double row = (j - 1) * kProbeRow, v = static_cast<double>(value[j * C + c]);
    const double training = row / own, predicting = (row - running_mean[c]) / running;
    off_training += std::fabs(v - training) / std::max(std::fabs(training), 1.0);
    off_predicting += std::fabs(v - predicting) / std::max(std::fabs(predicting), 1.0);
  }
  // Training matches to float16's rounding at worst; a NaN distance never says training.
  return off_training < 1e-2 && !(off_predicting <= off_training);
}

// Batch statistics when training, unless told to use the running ones. The `training` input
// says the mode: as a flag (probe=0), 1 while training and 0 while predicting in its last
// value; as gluon_bn's probe (probe=2), see probe_says_training; as the probe of graphs
// exported by earlier versions (probe=1), below 1.5 while training in its last value.
template <typename P>
bool batch_statistics(MXTensor& training, const P* running_mean, const P* running_var,
                      const Attrs& attrs) {
  if (attrs.use_global_stats) return false;
  if (attrs.probe == 2) return probe_says_training(training, running_mean, running_var);
  const float mode = training.data<float>()[training.size() - 1];
  return attrs.probe == 1 ? mode < 1.5f : mode > 0.5f;
}

template <typename T, typename P>
MXReturnValue forward_impl(const Attrs& attrs, std::vector<MXTensor>* inputs,
                           std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  std::vector<MXTensor>& in = *inputs;
  Layout l(in[kData].shape, attrs.axis);
  const T* x = in[kData].data<T>();
  const P* gamma = in[kGamma].data<P>();
  const P* beta = in[kBeta].data<P>();
  P* running_mean = in[kRunningMean].data<P>();
  P* running_var = in[kRunningVar].data<P>();
  T* y = (*outputs)[kOut].data<T>();
  P* mean_out = (*outputs)[kMean].data<P>();
  P* inv_std_out = (*outputs)[kInvStd].data<P>();

  // An empty batch has no statistics: it leaves the running ones as they are.
  const bool batch =
      batch_statistics(in[kTraining], running_mean, running_var, attrs) && l.per_channel() > 0;
  const Acc n = static_cast<Acc>(l.per_channel()), mom = static_cast<Acc>(attrs.momentum);
  std::vector<Acc> mean(l.C), var(l.C), scale(l.C);
  // Everything a channel needs, while its values are in cache: statistics, output.
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    if (batch) {
      channel_sums(l, c0, c1, [&](int64_t, int64_t i) { return static_cast<Acc>(x[i]); },
                   mean.data());
      for (int64_t c = c0; c < c1; ++c) mean[c] /= n;
      channel_sums(l, c0, c1, [&](int64_t c, int64_t i) {
        const Acc d = x[i] - mean[c];
        return d * d;
      }, var.data());
    }
    for (int64_t c = c0; c < c1; ++c) {
      if (batch) {
        var[c] /= n;
        running_mean[c] = moving_average(running_mean[c], mean[c], mom);
        running_var[c] = moving_average(running_var[c], var[c], mom);
      } else {
        mean[c] = running_mean[c];
        var[c] = running_var[c];
      }
      const Acc inv_std = inverse_std(var[c], attrs.eps);
      scale[c] = scale_of(gamma[c], inv_std, attrs.fix_gamma);
      mean_out[c] = static_cast<P>(mean[c]);
      inv_std_out[c] = static_cast<P>(inv_std);
    }
    for_each_value(l, c0, c1, [&](int64_t c, int64_t i) {
      y[i] = static_cast<T>((x[i] - mean[c]) * scale[c] + beta[c]);
    });
  });
  return MX_SUCCESS;
}

// Backward inputs: gradients of the 3 outputs, the 6 inputs, the 3 outputs.
// Backward outputs: gradients of the 6 inputs.
template <typename T, typename P>
MXReturnValue backward_impl(const Attrs& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs) {
  using Acc = typename Wider<T>::type;
  std::vector<MXTensor>& in = *inputs;
  MXTensor* fwd_in = &in[kNumOutputs];
  MXTensor* fwd_out = &in[kNumOutputs + kNumInputs];
  Layout l(fwd_in[kData].shape, attrs.axis);
  const T* dy = in[kOut].data<T>();
  const T* x = fwd_in[kData].data<T>();
  const P* gamma = fwd_in[kGamma].data<P>();
  const P* mean = fwd_out[kMean].data<P>();
  const P* inv_std = fwd_out[kInvStd].data<P>();
  T* dx = (*outputs)[kData].data<T>();
  P* dgamma = (*outputs)[kGamma].data<P>();
  P* dbeta = (*outputs)[kBeta].data<P>();

  // With batch statistics, mean and variance depend on x; with running ones, y is affine in x.
  // (In training, the forward pass has updated the running statistics since; the probe still
  // matches its own normalization, so the mode reads the same.)
  const bool batch = batch_statistics(fwd_in[kTraining], fwd_in[kRunningMean].data<P>(),
                                      fwd_in[kRunningVar].data<P>(), attrs) &&
                     l.per_channel() > 0;
  const Acc m = static_cast<Acc>(l.per_channel());
  // dx = k * (dy - mean(dy)) - g * (x - mean), with k = gamma * inv_std and
  // g = k * inv_std * mean(dy * x_hat); g = 0 where the statistics are constants.
  std::vector<Acc> sum_dy(l.C), sum_dy_xhat(l.C), k(l.C), mean_dy(l.C), g(l.C);
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    channel_sums2(l, c0, c1, [&](int64_t c, int64_t i) {
      const Acc d = dy[i], mu = mean[c], is = inv_std[c];
      return Pair<Acc>{d, d * ((x[i] - mu) * is)};
    }, sum_dy.data(), sum_dy_xhat.data());
    for (int64_t c = c0; c < c1; ++c) {
      const Acc is = inv_std[c];
      k[c] = scale_of(gamma[c], is, attrs.fix_gamma);
      mean_dy[c] = batch ? sum_dy[c] / m : 0;
      g[c] = batch ? k[c] * is * sum_dy_xhat[c] / m : 0;
      dgamma[c] = attrs.fix_gamma ? P(0) : static_cast<P>(sum_dy_xhat[c]);
      dbeta[c] = static_cast<P>(sum_dy[c]);
    }
    for_each_value(l, c0, c1, [&](int64_t c, int64_t i) {
      const Acc centred = x[i] - static_cast<Acc>(mean[c]);
      dx[i] = static_cast<T>(k[c] * (dy[i] - mean_dy[c]) - g[c] * centred);
    });
  });
  for (int i : {kRunningMean, kRunningVar, kTraining}) zero(&(*outputs)[i]);
  return MX_SUCCESS;
}

MXReturnValue forward(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource&) {
  const Attrs a(attrs);
  return dispatch((*inputs)[kData].dtype, (*inputs)[kGamma].dtype, [&](auto t, auto p) {
    return forward_impl<decltype(t), decltype(p)>(a, inputs, outputs);
  });
}

MXReturnValue backward(const AttrMap& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource&) {
  const Attrs a(attrs);
  const MXTensor* fwd_in = &(*inputs)[kNumOutputs];
  return dispatch(fwd_in[kData].dtype, fwd_in[kGamma].dtype, [&](auto t, auto p) {
    return backward_impl<decltype(t), decltype(p)>(a, inputs, outputs);
  });
}

MXReturnValue infer_type(const AttrMap& attrs, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  const char* op = "gluon_bn_batch_norm";
  const int dtype = (*in_types)[kData];
  int params;
  if (!supported_dtype(op, dtype, true) || !param_dtype(op, dtype, (*in_types)[kGamma], &params))
    return MX_FAIL;
  for (int i : {kGamma, kBeta, kRunningMean, kRunningVar}) (*in_types)[i] = params;
  // The probe comes in the statistics' dtype; a flag, or the earlier probe, in float32.
  (*in_types)[kTraining] = Attrs(attrs).probe == 2 ? params : kFloat32;
  (*out_types)[kOut] = dtype;
  (*out_types)[kMean] = (*out_types)[kInvStd] = params;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const AttrMap& attrs,
                          std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  const std::vector<unsigned int>& data = (*in_shapes)[kData];
  std::vector<unsigned int> channels(1);
  if (!channels_on_axis("gluon_bn_batch_norm", data, Attrs(attrs).axis, &channels[0]))
    return MX_FAIL;
  for (int i : {kGamma, kBeta, kRunningMean, kRunningVar})
    if (!per_channel("gluon_bn_batch_norm", i, channels[0], &(*in_shapes)[i])) return MX_FAIL;
  if (Attrs(attrs).probe == 2) {   // the probe's rows -K, 0, K of every channel
    std::vector<unsigned int>& probe = (*in_shapes)[kTraining];
    if (!known(probe)) {
      probe = {3, channels[0]};
    } else if (probe.size() != 2 || probe[0] != 3 || probe[1] != channels[0]) {
      error_message("gluon_bn_batch_norm") << "the mode probe must have shape (3, "
                                           << channels[0] << ")";
      return MX_FAIL;
    }
  } else if (!known((*in_shapes)[kTraining])) {
    (*in_shapes)[kTraining] = {1};
  }
  (*out_shapes)[kOut] = data;
  (*out_shapes)[kMean] = channels;
  (*out_shapes)[kInvStd] = channels;
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(gluon_bn_batch_norm)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu")
    .setParseAttrs(arity<kNumInputs, kNumOutputs>)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setMutateInputs(writes_inputs<kRunningMean, kRunningVar>);

MXReturnValue initialize(int) { return MX_SUCCESS; }
