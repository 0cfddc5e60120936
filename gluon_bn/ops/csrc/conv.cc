// The first convolution of the chapter's LeNet, which MXNet's oneDNN kernel runs slowly: one input
// channel, 5x5 windows, stride 1, no padding, NCHW, float32 (forward and backward at batch 256
// into six channels: 2.6 ms, PyTorch's 1.0 ms).
//
// gluon_bn_conv: data (N, 1, H, W), weight (F, 1, 5, 5), bias (F,) -> (N, F, H - 4, W - 4)
//   y[n, f, i, j] = bias[f] + sum over a, b of weight[f, 0, a, b] * x[n, 0, i + a, j + b],
//   summed in the order (a, b).
// Backward: dx[n, 0, p, q] = sum over f, a, b of weight[f, 0, a, b] * dy[n, f, p - a, q - b]
//   (MXNet hands the operator a buffer for it even where no gradient is wanted); dweight and
//   dbias summed in float per block of kBlock samples, the blocks added in order in double, so
//   the bits do not depend on the threads.
// The loops have F and the output width as compile-time constants for LeNet's sizes (6 and 24
// on Fashion-MNIST), so the accumulators stay in vector registers; other sizes run the same
// arithmetic in plain loops.

#include <algorithm>
#include <cstring>
#include <vector>

#include "common.h"

using namespace mxnet::ext;
using namespace gluon_bn;

namespace {

enum Input { kData, kWeight, kBias, kNumInputs };
constexpr int kSize = 5;         // the window
constexpr int64_t kBlock = 16;   // samples per partial sum of the weights' gradient

struct Dims {
  int64_t N, H, W, F, OH, OW;
  Dims(const std::vector<int64_t>& x, const std::vector<int64_t>& w)
      : N(x[0]), H(x[2]), W(x[3]), F(w[0]), OH(x[2] - kSize + 1), OW(x[3] - kSize + 1) {}
};

int threads_for(const Dims& d) {
  return d.N * d.F * d.OH * d.OW < kMinParallel ? 1 : omp_get_max_threads();
}

// The kernels, for F filters and output rows of OW values (compile-time constants, or 0: taken
// from d at run time).
template <int F_, int OW_>
struct Kernels {
  static void forward(const Dims& d, const float* x, const float* w, const float* bias,
                      float* y, int threads) {
    const int64_t F = F_ ? F_ : d.F, OW = OW_ ? OW_ : d.OW;
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> dynamic(F_ && OW_ ? 0 : F * OW);   // sizes known only now
#pragma omp for schedule(static)
      for (int64_t n = 0; n < d.N; ++n)
        for (int64_t i = 0; i < d.OH; ++i) {
          float acc[F_ ? F_ : 1][OW_ ? OW_ : 1];
          float* out = F_ && OW_ ? &acc[0][0] : dynamic.data();
          for (int64_t f = 0; f < F; ++f)
            for (int64_t j = 0; j < OW; ++j) out[f * OW + j] = bias[f];
          for (int a = 0; a < kSize; ++a) {
            const float* row = x + (n * d.H + i + a) * d.W;
            for (int b = 0; b < kSize; ++b)
              for (int64_t f = 0; f < F; ++f) {
                const float weight = w[(f * kSize + a) * kSize + b];
                for (int64_t j = 0; j < OW; ++j) out[f * OW + j] += weight * row[j + b];
              }
          }
          for (int64_t f = 0; f < F; ++f)
            std::memcpy(y + ((n * F + f) * d.OH + i) * OW, out + f * OW, OW * sizeof(float));
        }
    }
  }

  // dx as the convolution of dy, padded by 4 all round, with the windows turned half a turn.
  static void data_gradient(const Dims& d, const float* dy, const float* w, float* dx,
                            int threads) {
    const int64_t F = F_ ? F_ : d.F, OW = OW_ ? OW_ : d.OW, W = OW + kSize - 1;
    const int64_t PH = d.OH + 2 * (kSize - 1), PW = OW + 2 * (kSize - 1);
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> padded(F * PH * PW, 0.0f), dynamic(W);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < d.N; ++n) {
        for (int64_t f = 0; f < F; ++f)
          for (int64_t i = 0; i < d.OH; ++i)
            std::memcpy(&padded[(f * PH + i + kSize - 1) * PW + kSize - 1],
                        dy + ((n * F + f) * d.OH + i) * OW, OW * sizeof(float));
        for (int64_t p = 0; p < d.H; ++p) {
          float fixed[OW_ ? OW_ + kSize - 1 : 1];
          float* acc = OW_ ? fixed : dynamic.data();
          for (int64_t q = 0; q < W; ++q) acc[q] = 0.0f;
          for (int64_t f = 0; f < F; ++f)
            for (int a = 0; a < kSize; ++a) {
              // dy row p - a, shifted by kSize - 1 in the padding
              const float* row = &padded[(f * PH + p - a + kSize - 1) * PW + kSize - 1];
              for (int b = 0; b < kSize; ++b) {
                const float weight = w[(f * kSize + a) * kSize + b];
                for (int64_t q = 0; q < W; ++q) acc[q] += weight * row[q - b];
              }
            }
          std::memcpy(dx + (n * d.H + p) * W, acc, W * sizeof(float));
        }
      }
    }
  }

  // A block of samples' share of dweight and dbias, in float: sums[f * 25 + a * 5 + b], then
  // sums[F * 25 + f].
  static void weight_gradient(const Dims& d, const float* dy, const float* x, int64_t first,
                              int64_t last, double* sums) {
    const int64_t F = F_ ? F_ : d.F, OW = OW_ ? OW_ : d.OW;
    std::vector<float> dynamic(OW_ ? 0 : kSize * OW);   // sizes known only now
    for (int64_t f = 0; f < F; ++f) {
      for (int a = 0; a < kSize; ++a) {
        float acc[kSize][OW_ ? OW_ : 1];
        float* lanes = OW_ ? &acc[0][0] : dynamic.data();
        for (int64_t k = 0; k < kSize * OW; ++k) lanes[k] = 0.0f;
        for (int64_t n = first; n < last; ++n)
          for (int64_t i = 0; i < d.OH; ++i) {
            const float* g = dy + ((n * F + f) * d.OH + i) * OW;
            const float* row = x + (n * d.H + i + a) * d.W;
            for (int b = 0; b < kSize; ++b)
              for (int64_t j = 0; j < OW; ++j) lanes[b * OW + j] += g[j] * row[j + b];
          }
        for (int b = 0; b < kSize; ++b)
          sums[(f * kSize + a) * kSize + b] =
              lane_sum<double>(0, OW, [&](int64_t j) { return double(lanes[b * OW + j]); });
      }
      double bias = 0;
      for (int64_t n = first; n < last; ++n)
        bias += lane_sum<double>(0, d.OH * OW, [&](int64_t k) {
          return double(dy[(n * F + f) * d.OH * OW + k]);
        });
      sums[F * kSize * kSize + f] = bias;
    }
  }
};

template <typename F>
void with_kernels(const Dims& d, F f) {
  if (d.F == 6 && d.OW == 24) return f(Kernels<6, 24>());   // LeNet on 28 x 28 images
  f(Kernels<0, 0>());
}

MXReturnValue forward(const AttrMap&, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource&) {
  std::vector<MXTensor>& in = *inputs;
  const Dims d(in[kData].shape, in[kWeight].shape);
  with_kernels(d, [&](auto k) {
    k.forward(d, in[kData].data<float>(), in[kWeight].data<float>(), in[kBias].data<float>(),
              (*outputs)[0].data<float>(), threads_for(d));
  });
  return MX_SUCCESS;
}

// Backward inputs: dy; data, weight, bias; y. Outputs: dx, dweight, dbias.
MXReturnValue backward(const AttrMap&, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource&) {
  std::vector<MXTensor>& in = *inputs;
  const Dims d(in[1 + kData].shape, in[1 + kWeight].shape);
  const float* dy = in[0].data<float>();
  const float* x = in[1 + kData].data<float>();
  const float* w = in[1 + kWeight].data<float>();
  const int threads = threads_for(d);
  const int64_t taps = d.F * kSize * kSize, blocks = (d.N + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks * (taps + d.F));
  with_kernels(d, [&](auto k) {
    k.data_gradient(d, dy, w, (*outputs)[kData].data<float>(), threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t block = 0; block < blocks; ++block)
      k.weight_gradient(d, dy, x, block * kBlock, std::min(d.N, (block + 1) * kBlock),
                        &partial[block * (taps + d.F)]);
  });
  float* dw = (*outputs)[kWeight].data<float>();
  float* dbias = (*outputs)[kBias].data<float>();
  for (int64_t t = 0; t < taps + d.F; ++t) {
    double total = 0;
    for (int64_t block = 0; block < blocks; ++block) total += partial[block * (taps + d.F) + t];
    if (t < taps) dw[t] = static_cast<float>(total);
    else dbias[t - taps] = static_cast<float>(total);
  }
  return MX_SUCCESS;
}

MXReturnValue infer_type(const AttrMap&, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  if ((*in_types)[kData] != kFloat32) {
    error_message("gluon_bn_conv") << "supports float32 data, got "
                                   << dtype_name((*in_types)[kData]);
    return MX_FAIL;
  }
  (*in_types)[kWeight] = (*in_types)[kBias] = kFloat32;
  (*out_types)[0] = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const AttrMap&, std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  const std::vector<unsigned int>& x = (*in_shapes)[kData];
  std::vector<unsigned int>& w = (*in_shapes)[kWeight];
  // nn.Conv2D without in_channels: the weight's second dimension is learnt from the data.
  if (w.size() == 4 && (w[1] == 0 || w[1] == static_cast<unsigned int>(-1))) w[1] = 1;
  if (x.size() != 4 || x[1] != 1 || x[2] < kSize || x[3] < kSize || w.size() != 4 ||
      w[1] != 1 || w[2] != kSize || w[3] != kSize) {
    error_message("gluon_bn_conv") << "takes data (N, 1, H, W) with H, W >= 5 and weight "
                                   << "(F, 1, 5, 5)";
    return MX_FAIL;
  }
  (*in_shapes)[kBias] = {w[0]};
  (*out_shapes)[0] = {x[0], w[0], x[2] - kSize + 1, x[3] - kSize + 1};
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(gluon_bn_conv)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu")
    .setParseAttrs(arity<kNumInputs, 1>)
    .setInferType(infer_type)
    .setInferShape(infer_shape);
