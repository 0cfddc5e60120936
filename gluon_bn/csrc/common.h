// Helpers shared by gluon_bn's operators: the channel layout, the wider summation type.
#ifndef GLUON_BN_COMMON_H_
#define GLUON_BN_COMMON_H_

#include <cstdint>
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
    MX_ERROR_MSG << op << ": gamma, beta and the running statistics need one value per channel ("
                 << channels << "), input " << input << " has " << size;
    return false;
  }
  return true;
}

// A "True"/"1" attribute.
inline bool flag(const std::string& v) { return v == "True" || v == "true" || v == "1"; }

}  // namespace gluon_bn

#endif  // GLUON_BN_COMMON_H_
