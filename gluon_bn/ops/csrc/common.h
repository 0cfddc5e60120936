// Helpers shared by gluon_bn's operators: the channel layout, the wider summation type.
#ifndef GLUON_BN_COMMON_H_
#define GLUON_BN_COMMON_H_

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

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

using AttrMap = std::unordered_map<std::string, std::string>;

// A "True"/"1" attribute.
inline bool flag(const std::string& v) { return v == "True" || v == "true" || v == "1"; }

// Every operator's attributes, parsed in one place: axis (the channel axis), eps, momentum,
// fix_gamma (nn.BatchNorm's scale=False), use_global_stats, num_devices (gluon_bn_combine),
// probe (what gluon_bn_batch_norm's `training` input is: 0 a flag, 1 or 2 a mode probe).
struct Attrs {
  int axis = 1, num_devices = 1, probe = 0;
  double eps = 1e-5, momentum = 0.9;
  bool fix_gamma = false, use_global_stats = false;

  explicit Attrs(const AttrMap& a) {
    if (a.count("axis")) axis = std::stoi(a.at("axis"));
    if (a.count("num_devices")) num_devices = std::stoi(a.at("num_devices"));
    if (a.count("eps")) eps = std::stod(a.at("eps"));
    if (a.count("momentum")) momentum = std::stod(a.at("momentum"));
    if (a.count("fix_gamma")) fix_gamma = flag(a.at("fix_gamma"));
    if (a.count("use_global_stats")) use_global_stats = flag(a.at("use_global_stats"));
    if (a.count("probe")) probe = a.at("probe") == "2" ? 2 : flag(a.at("probe")) ? 1 : 0;
  }
};

// IEEE binary16, as MXNet's float16 (GCC and Clang convert it with one rounding).
using half = _Float16;

// Sums run in a wider type, so they are exact to the precision of the result.
template <typename T> struct Wider;
template <> struct Wider<half> { using type = double; };
template <> struct Wider<float> { using type = double; };
template <> struct Wider<double> { using type = long double; };

// Calls f(T(), P()) with T the data's type and P that of gamma, beta and the running statistics:
// float64 with float64, float32 with float32, float16 with float32 (what nn.BatchNorm's
// cast('float16') keeps) or float16. The one place that maps MXNet's dtypes to C++ types.
template <typename F>
auto dispatch(int data, int params, F f) -> decltype(f(float(), float())) {
  switch (data) {
    case mxnet::ext::kFloat64: return f(double(), double());
    case mxnet::ext::kFloat16:
      return params == mxnet::ext::kFloat16 ? f(half(), half()) : f(half(), float());
    default: return f(float(), float());
  }
}

// ---- Threads and loops ---------------------------------------------------------------------
//
// Work is split between threads by channel, with OpenMP: the runtime MXNet itself links
// (libgomp), so the two share one pool of threads, and a call uses as many as MXNet grants its
// own operators (OMP_NUM_THREADS, MXNET_OMP_MAX_THREADS). Every channel's sums run in an order
// fixed by the layout alone, so the results are the same bits with one thread or sixteen.

// Below this many values a call stays on one thread: waking the others costs more than it saves.
constexpr int64_t kMinParallel = 1 << 15;

// Calls f(c0, c1) on groups of channels [c0, c1) that together cover them all, the threads'
// shares in parallel. Within a share, a group is one channel when each channel's values lie in
// runs (post > 1), so that the passes over a channel find it in cache; it is the whole share
// when a channel has one value per row (post == 1), so that the inner loops run along a row.
template <typename F>
void for_channel_groups(const Layout& l, F f) {
  auto share = [&](int64_t c0, int64_t c1) {
    if (l.post == 1) {
      if (c0 < c1) f(c0, c1);
    } else {
      for (int64_t c = c0; c < c1; ++c) f(c, c + 1);
    }
  };
  const int64_t threads = l.pre * l.C * l.post < kMinParallel
                              ? 1 : std::min<int64_t>(omp_get_max_threads(), l.C);
  if (threads <= 1) return share(0, l.C);
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    share(l.C * t / n, l.C * (t + 1) / n);
  }
}

// Independent partial sums in a run: they hide the latency of the additions and fill vector
// registers, and combined pairwise at the end they are at least as accurate as one running sum.
constexpr int kLanes = 16;

template <typename Acc, typename Term>
Acc lane_sum(int64_t begin, int64_t end, Term term) {
  Acc acc[kLanes] = {};
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += term(i + j);
  for (int j = 0; i < end; ++i, ++j) acc[j] += term(i);
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  return acc[0];
}

// Two sums in one pass: term(i) returns both terms, as a Pair.
template <typename Acc>
struct Pair { Acc a, b; };

template <typename Acc, typename Term>
Pair<Acc> lane_sum2(int64_t begin, int64_t end, Term term) {
  Acc a[kLanes] = {}, b[kLanes] = {};
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const Pair<Acc> t = term(i + j);
      a[j] += t.a;
      b[j] += t.b;
    }
  for (int j = 0; i < end; ++i, ++j) {
    const Pair<Acc> t = term(i);
    a[j] += t.a;
    b[j] += t.b;
  }
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) {
      a[j] += a[j + width];
      b[j] += b[j + width];
    }
  return {a[0], b[0]};
}

// out[c] = the sum of term(c, i) over channel c's values i, for c in [c0, c1), in the wider type.
template <typename Acc, typename Term>
void channel_sums(const Layout& l, int64_t c0, int64_t c1, Term term, Acc* out) {
  if (l.post == 1) {   // one value per row: down the rows, a running sum per channel
    for (int64_t c = c0; c < c1; ++c) out[c] = 0;
    for (int64_t p = 0; p < l.pre; ++p) {
      const int64_t row = p * l.C;
      for (int64_t c = c0; c < c1; ++c) out[c] += term(c, row + c);
    }
    return;
  }
  for (int64_t c = c0; c < c1; ++c) {
    Acc total = 0;
    for (int64_t p = 0; p < l.pre; ++p) {
      const int64_t b = (p * l.C + c) * l.post;
      total += lane_sum<Acc>(b, b + l.post, [&](int64_t i) { return term(c, i); });
    }
    out[c] = total;
  }
}

// channel_sums of two terms at once (term(c, i) returns a Pair), in the same order: one pass.
template <typename Acc, typename Term>
void channel_sums2(const Layout& l, int64_t c0, int64_t c1, Term term, Acc* out_a, Acc* out_b) {
  if (l.post == 1) {
    for (int64_t c = c0; c < c1; ++c) out_a[c] = out_b[c] = 0;
    for (int64_t p = 0; p < l.pre; ++p) {
      const int64_t row = p * l.C;
      for (int64_t c = c0; c < c1; ++c) {
        const Pair<Acc> t = term(c, row + c);
        out_a[c] += t.a;
        out_b[c] += t.b;
      }
    }
    return;
  }
  for (int64_t c = c0; c < c1; ++c) {
    Acc total_a = 0, total_b = 0;
    for (int64_t p = 0; p < l.pre; ++p) {
      const int64_t b = (p * l.C + c) * l.post;
      const Pair<Acc> t = lane_sum2<Acc>(b, b + l.post, [&](int64_t i) { return term(c, i); });
      total_a += t.a;
      total_b += t.b;
    }
    out_a[c] = total_a;
    out_b[c] = total_b;
  }
}

// f(c, i) for every value i of the channels c in [c0, c1).
template <typename F>
void for_each_value(const Layout& l, int64_t c0, int64_t c1, F f) {
  for (int64_t p = 0; p < l.pre; ++p) {
    if (l.post == 1) {
      for (int64_t c = c0; c < c1; ++c) f(c, p * l.C + c);
    } else {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t i = (p * l.C + c) * l.post, e = i + l.post; i < e; ++i) f(c, i);
    }
  }
}

// Per channel: the mean and the sum of squared deviations from it (M2), in two passes summed in
// the wider type.
template <typename T, typename Acc>
void two_pass_moments(const Layout& l, const T* x, std::vector<Acc>* mean, std::vector<Acc>* m2) {
  const Acc n = static_cast<Acc>(l.per_channel());
  mean->assign(l.C, 0);
  m2->assign(l.C, 0);
  Acc* mu = mean->data();
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    channel_sums(l, c0, c1, [&](int64_t, int64_t i) { return static_cast<Acc>(x[i]); }, mu);
    for (int64_t c = c0; c < c1; ++c) mu[c] /= n;
    channel_sums(l, c0, c1, [&](int64_t c, int64_t i) {
      const Acc d = x[i] - mu[c];
      return d * d;
    }, m2->data());
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
template <typename T, typename B, typename Mean, typename Acc>
void affine(const Layout& l, const T* x, const Mean& mean, const std::vector<Acc>& scale,
            const B* beta, T* y) {
  for_channel_groups(l, [&](int64_t c0, int64_t c1) {
    for_each_value(l, c0, c1, [&](int64_t c, int64_t i) {
      y[i] = static_cast<T>((x[i] - static_cast<Acc>(mean[c])) * scale[c] + beta[c]);
    });
  });
}

// One step of a running statistic: momentum * running + (1 - momentum) * batch statistic.
template <typename T, typename Acc>
T moving_average(T running, Acc statistic, Acc momentum) {
  return static_cast<T>(momentum * running + (1 - momentum) * statistic);
}

inline size_t dtype_size(int dtype) {
  switch (dtype) {
    case mxnet::ext::kFloat64: case mxnet::ext::kInt64: return 8;
    case mxnet::ext::kFloat16: return 2;
    case mxnet::ext::kUint8: case mxnet::ext::kInt8: return 1;
    default: return 4;
  }
}

// Zeroes a gradient the operator does not have (running statistics, flags).
inline void zero(mxnet::ext::MXTensor* t) {
  std::memset(t->data_ptr, 0, t->size() * dtype_size(t->dtype));
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

// The data types an operator supports (float16 only where `half` is true); otherwise an error
// that names the operator.
inline bool supported_dtype(const char* op, int dtype, bool half = false) {
  if (dtype == mxnet::ext::kFloat32 || dtype == mxnet::ext::kFloat64 ||
      (half && dtype == mxnet::ext::kFloat16))
    return true;
  error_message(op) << "supports " << (half ? "float16, " : "") << "float32 and float64 data, got "
                    << dtype_name(dtype);
  return false;
}

// The dtype of gamma, beta and the running statistics for data of dtype `data`, given what they
// were declared with (-1: not yet known): data's own, except that float16 data keeps them in
// float32 unless they are float16 themselves.
inline bool param_dtype(const char* op, int data, int given, int* params) {
  if (data != mxnet::ext::kFloat16) {
    *params = data;
    return true;
  }
  if (given == -1 || given == mxnet::ext::kFloat32 || given == mxnet::ext::kFloat16) {
    *params = given == mxnet::ext::kFloat16 ? given : mxnet::ext::kFloat32;
    return true;
  }
  error_message(op) << "float16 data takes float32 or float16 gamma, beta and running "
                    << "statistics, got " << dtype_name(given);
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

// Registration callbacks MXNet's lib_api needs one function of for each operator, written once:
// an operator's fixed numbers of inputs and outputs, and the inputs it writes in place.
template <int kInputs, int kOutputs>
mxnet::ext::MXReturnValue arity(const AttrMap&, int* num_inputs, int* num_outputs) {
  *num_inputs = kInputs;
  *num_outputs = kOutputs;
  return mxnet::ext::MX_SUCCESS;
}

template <int... kInputs>
mxnet::ext::MXReturnValue writes_inputs(const AttrMap&, std::vector<int>* input_indices) {
  (input_indices->push_back(kInputs), ...);
  return mxnet::ext::MX_SUCCESS;
}

}  // namespace gluon_bn

#endif  // GLUON_BN_COMMON_H_
