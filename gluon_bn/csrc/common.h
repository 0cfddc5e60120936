// Helpers shared by gluon_bn's operators: the channel layout, the wider summation type.
#ifndef GLUON_BN_COMMON_H_
#define GLUON_BN_COMMON_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

namespace gluon_bn {

// x viewed as (pre, C, post): the channel axis in the middle.
struct Layout {
  int64_t pre = 1, C = 1, post = 1;
  Layout(const std::vector<int64_t>& shape, int axis) {
    int nd = static_cast<int>(shape.size());
    axis = (axis % nd + nd) % nd;
    for (int i = 0; i < axis; ++i) pre *= shape[i];
    C = shape[axis];
    for (int i = axis + 1; i < nd; ++i) post *= shape[i];
  }
  int64_t per_channel() const { return pre * post; }
};

// Sums run in a wider type, so they are exact to the precision of the result.
template <typename T> struct Wider;
template <> struct Wider<float> { using type = double; };
template <> struct Wider<double> { using type = long double; };

// Calls f(c, begin, end) for every contiguous run of channel c's values.
template <typename F>
void for_channel_runs(const Layout& l, F f) {
  for (int64_t p = 0; p < l.pre; ++p)
    for (int64_t c = 0; c < l.C; ++c) {
      int64_t begin = (p * l.C + c) * l.post;
      f(c, begin, begin + l.post);
    }
}

// Per channel: the mean and the sum of squared deviations from it (M2), in two passes summed in
// the wider type.
template <typename T, typename Acc>
void two_pass_moments(const Layout& l, const T* x, std::vector<Acc>* mean, std::vector<Acc>* m2) {
  const Acc n = static_cast<Acc>(l.per_channel());
  std::vector<Acc> sum(l.C, 0);
  mean->assign(l.C, 0);
  m2->assign(l.C, 0);
  for_channel_runs(l, [&](int64_t c, int64_t b, int64_t e) {
    Acc s = 0;
    for (int64_t i = b; i < e; ++i) s += x[i];
    sum[c] += s;
  });
  for (int64_t c = 0; c < l.C; ++c) (*mean)[c] = sum[c] / n;
  for_channel_runs(l, [&](int64_t c, int64_t b, int64_t e) {
    Acc s = 0;
    for (int64_t i = b; i < e; ++i) { Acc d = x[i] - (*mean)[c]; s += d * d; }
    (*m2)[c] += s;
  });
}

// 1 / sqrt(var + eps), in the wider type.
template <typename Acc>
Acc inverse_std(Acc var, double eps) { return 1 / std::sqrt(var + static_cast<Acc>(eps)); }

// The factor of (x - mean) in y: gamma / sqrt(var + eps), or 1 / sqrt(var + eps) when gamma is
// fixed at 1 (fix_gamma: nn.BatchNorm's scale=False).
template <typename T, typename Acc>
Acc scale_of(T gamma, Acc inv_std, bool fix_gamma) { return fix_gamma ? inv_std : gamma * inv_std; }

// y = (x - mean) * scale + beta in the wider type: one rounding, at the end.
template <typename T, typename Mean, typename Acc>
void affine(const Layout& l, const T* x, const Mean& mean, const std::vector<Acc>& scale,
            const T* beta, T* y) {
  for_channel_runs(l, [&](int64_t c, int64_t b, int64_t e) {
    const Acc mu = mean[c], k = scale[c], t = beta[c];
    for (int64_t i = b; i < e; ++i) y[i] = static_cast<T>((x[i] - mu) * k + t);
  });
}

// One step of a running statistic: momentum * running + (1 - momentum) * batch statistic.
template <typename T, typename Acc>
T moving_average(T running, Acc statistic, Acc momentum) {
  return static_cast<T>(momentum * running + (1 - momentum) * statistic);
}

// Zeroes a gradient the operator does not have (running statistics, flags).
inline void zero(mxnet::ext::MXTensor* t) {
  std::memset(t->data_ptr, 0, t->size() * (t->dtype == mxnet::ext::kFloat64 ? 8 : 4));
}

// MXNet's extension API keeps every error message a library ever reported and shows them all
// with each new error; this forgets the old ones (defined in batch_norm.cc).
void forget_old_errors();

// Where an operator's error message is written: alone, and starting with the operator's name.
inline std::ostream& error_message(const char* op) {
  forget_old_errors();
  return MX_ERROR_MSG << op << ": ";
}

inline const char* dtype_name(int dtype) {
  switch (dtype) {
    case mxnet::ext::kFloat32: return "float32";
    case mxnet::ext::kFloat64: return "float64";
    case mxnet::ext::kFloat16: return "float16";
    case mxnet::ext::kUint8: return "uint8";
    case mxnet::ext::kInt32: return "int32";
    case mxnet::ext::kInt8: return "int8";
    case mxnet::ext::kInt64: return "int64";
    default: return "an unsupported type";
  }
}

// The data types the operators support; otherwise an error that names the operator.
inline bool supported_dtype(const char* op, int dtype) {
  if (dtype == mxnet::ext::kFloat32 || dtype == mxnet::ext::kFloat64) return true;
  error_message(op) << "supports float32 and float64 data, got " << dtype_name(dtype);
  return false;
}

// The number of channels of a shape whose channels are on `axis` (negative: from the end), or
// an error if the shape has no such axis (nn.BatchNorm's "Channel axis out of range").
inline bool channels_on_axis(const char* op, const std::vector<unsigned int>& shape, int axis,
                             unsigned int* channels) {
  const int nd = static_cast<int>(shape.size());
  if (axis < -nd || axis >= nd) {
    error_message(op) << "channel axis " << axis << " is out of range for a " << nd
                      << "D input";
    return false;
  }
  *channels = shape[(axis + nd) % nd];
  return true;
}

// MXNet marks a shape it does not know yet (deferred initialization) by -1 or 0 dimensions.
inline bool known(const std::vector<unsigned int>& s) {
  for (unsigned int d : s)
    if (d == 0 || d == static_cast<unsigned int>(-1)) return false;
  return !s.empty();
}

// gamma, beta and the running statistics hold one value per channel, in any shape: (C,) as
// nn.BatchNorm keeps them, (1, C) or (1, C, 1, 1) as the book does. Fills in an unknown shape.
inline bool per_channel(const char* op, int input, unsigned int channels,
                        std::vector<unsigned int>* shape) {
  if (!known(*shape)) {
    *shape = {channels};
    return true;
  }
  uint64_t size = 1;
  for (unsigned int d : *shape) size *= d;
  if (size != channels) {
    error_message(op) << "gamma, beta and the running statistics need one value per channel ("
                      << channels << "), input " << input << " has " << size;
    return false;
  }
  return true;
}

// A "True"/"1" attribute.
inline bool flag(const std::string& v) { return v == "True" || v == "true" || v == "1"; }

}  // namespace gluon_bn

#endif  // GLUON_BN_COMMON_H_
