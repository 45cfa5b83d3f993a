// One recurrent layer over a whole sequence, forward and backward: the C++ half of `model.impl=sequence`
// (rnnlab/models/sequence.py compiles it on first use and wraps it in an autograd function).
//
// The batch is split into one block of rows per thread, and each thread runs all T steps of its rows alone:
// rows never interact, so the threads meet once per sequence instead of once per step. A step of a block is
// two small matmuls, x_t W_ih^T and h_{t-1} W_hh^T (the weights packed once per call, so that each step only
// streams its rows through them), and one pass of gate maths over the block; backwards, the same two products
// with the gates' gradients give those of x_t and h_{t-1}, and after the last step each weight's gradient is
// one large matmul over all the block's steps. Nothing of size [B, T, gates * H] is written forwards but what
// the backward pass needs.
//
// The equations are those of nn.RNN (tanh), nn.LSTM and nn.GRU, in their gate order; explicit.py has them
// written out. Shapes: B rows, T steps, E inputs, H hidden units, g gate blocks; x [B, T, E], w_ih [gH, E],
// w_hh [gH, H], biases [gH]. The initial state is zero.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

// MKL, which PyTorch's x86 builds link into libtorch_cpu and export.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest);
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);
int MKL_Set_Num_Threads_Local(int nthreads);  // the C name; the lower-case one is Fortran's
}

namespace {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162 };

// C[m, n] = A[m, k] op(W) + beta C, row-major, for one block of rows and every step: W is the same throughout,
// so in single precision MKL packs it once. op(W) = W^T when `transpose`; W is row-major with `ld` columns.
template <typename scalar_t>
struct StepMatmul;

template <>
struct StepMatmul<float> {
  int m, n, k;
  std::unique_ptr<float, decltype(&std::free)> packed{nullptr, &std::free};

  StepMatmul(const float* w, bool transpose, int ld, int m_, int n_, int k_) : m(m_), n(n_), k(k_) {
    size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, m, n, k);
    packed.reset(static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    TORCH_CHECK(packed, "rnnlab_sequence: out of memory for packed weights");
    cblas_sgemm_pack(kRowMajor, kBMatrix, transpose ? kTrans : kNoTrans, m, n, k, 1.0f, w, ld, packed.get());
  }
  void operator()(const float* a, int lda, float beta, float* c, int ldc) const {
    cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, m, n, k, a, lda, packed.get(), n, beta, c, ldc);
  }
};

template <>
struct StepMatmul<double> {  // the tests' precision: plain dgemm
  int m, n, k, ld;
  const double* w;
  char trans;

  StepMatmul(const double* w_, bool transpose, int ld_, int m_, int n_, int k_)
      : m(m_), n(n_), k(k_), ld(ld_), w(w_), trans(transpose ? 'T' : 'N') {}
  void operator()(const double* a, int lda, double beta, double* c, int ldc) const {
    const double one = 1.0;  // column-major BLAS computes the row-major C^T = op(W)^T A^T
    dgemm_(&trans, "N", &n, &m, &k, &one, w, &ld, a, &lda, &beta, c, &ldc);
  }
};

// c[n, m] += a[k, n]^T b[k, m], all row-major and contiguous: a weight's gradient over k rows (steps) at once.
void add_transposed_product(int k, int n, int m, const float* a, const float* b, float* c) {
  const float one = 1.0f;  // column-major BLAS computes the row-major c^T += b^T a
  if (k > 0) sgemm_("N", "T", &m, &n, &k, &one, b, &m, a, &n, &one, c, &m);
}
void add_transposed_product(int k, int n, int m, const double* a, const double* b, double* c) {
  const double one = 1.0;
  if (k > 0) dgemm_("N", "T", &m, &n, &k, &one, b, &m, a, &n, &one, c, &m);
}

// exp, sigmoid and tanh. Single precision: Cephes' expf and tanhf (within 2 ulp), written without branches so
// that the compiler vectorises the gate loops; double precision (the tests) uses the C library's.
inline float exp_(float x) {
  x = std::clamp(x, -87.0f, 87.0f);  // 2^n stays a normal float
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x - n ln 2, ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  return y * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}
inline double exp_(double x) { return std::exp(x); }

template <typename scalar_t>
inline scalar_t sigmoid(scalar_t x) { return scalar_t(1) / (scalar_t(1) + exp_(-x)); }

inline float tanh_(float x) {
  float z = std::abs(x);
  float large = 1.0f - 2.0f / (exp_(2.0f * z) + 1.0f);
  large = x < 0 ? -large : large;
  float s = x * x;
  float small = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s + 1.33314422036e-1f) * s
                 - 3.33332819422e-1f) * s * x + x;
  return z > 0.625f ? large : small;
}
inline double tanh_(double x) { return std::tanh(x); }

// Gate maths of one row at one step, forwards. RNN and LSTM: pre = x_t W_ih^T + h_{t-1} W_hh^T and b = b_ih + b_hh;
// `saved` receives what the backward pass needs.
template <typename scalar_t>
inline void rnn_step(int H, const scalar_t* __restrict__ pre, const scalar_t* __restrict__ b,
                     scalar_t* __restrict__ h) {
  for (int j = 0; j < H; ++j) h[j] = tanh_(pre[j] + b[j]);
}

template <typename scalar_t>
inline void lstm_step(int H, const scalar_t* __restrict__ pre, const scalar_t* __restrict__ b,
                      const scalar_t* __restrict__ cp, scalar_t* __restrict__ c, scalar_t* __restrict__ h,
                      scalar_t* __restrict__ saved) {
  for (int j = 0; j < H; ++j) {  // saved: i, f, g, o, tanh(c)
    scalar_t i = sigmoid(pre[j] + b[j]);
    scalar_t f = sigmoid(pre[H + j] + b[H + j]);
    scalar_t g = tanh_(pre[2 * H + j] + b[2 * H + j]);
    scalar_t o = sigmoid(pre[3 * H + j] + b[3 * H + j]);
    scalar_t cj = f * cp[j] + i * g;
    scalar_t tc = tanh_(cj);
    c[j] = cj;
    h[j] = o * tc;
    saved[j] = i, saved[H + j] = f, saved[2 * H + j] = g, saved[3 * H + j] = o, saved[4 * H + j] = tc;
  }
}

// GRU: the input part xw = x_t W_ih^T and the recurrent part hh = h_{t-1} W_hh^T apart, as r scales the
// recurrent part of the candidate only; hp = h_{t-1}.
template <typename scalar_t>
inline void gru_step(int H, const scalar_t* __restrict__ xw, const scalar_t* __restrict__ hh,
                     const scalar_t* __restrict__ b_ih, const scalar_t* __restrict__ b_hh,
                     const scalar_t* __restrict__ hp, scalar_t* __restrict__ h, scalar_t* __restrict__ saved) {
  for (int j = 0; j < H; ++j) {  // saved: r, z, n, and W_hn h + b_hn (r multiplies it)
    scalar_t r = sigmoid(xw[j] + b_ih[j] + (hh[j] + b_hh[j]));
    scalar_t z = sigmoid(xw[H + j] + b_ih[H + j] + (hh[H + j] + b_hh[H + j]));
    scalar_t hn = hh[2 * H + j] + b_hh[2 * H + j];
    scalar_t n = tanh_(xw[2 * H + j] + b_ih[2 * H + j] + r * hn);
    h[j] = n + z * (hp[j] - n);  // (1 - z) n + z h_{t-1}, as ATen writes it
    saved[j] = r, saved[H + j] = z, saved[2 * H + j] = n, saved[3 * H + j] = hn;
  }
}

// The same backwards, for one row at one step: dh_next holds the gradient reaching h_t from step t + 1 (and
// dc_next c_t's); d_x receives the gradient of the gates' pre-activations. Each leaves in dh_next what reaches
// h_{t-1} other than through the recurrent matmul, which the caller adds.
template <typename scalar_t>
inline void rnn_step_back(int H, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ h,
                          const scalar_t* __restrict__ dh_next, scalar_t* __restrict__ d_x) {
  for (int j = 0; j < H; ++j) d_x[j] = (grad_out[j] + dh_next[j]) * (scalar_t(1) - h[j] * h[j]);
}

template <typename scalar_t>
inline void lstm_step_back(int H, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ s,
                           const scalar_t* __restrict__ cp, const scalar_t* __restrict__ dh_next,
                           scalar_t* __restrict__ dc_next, scalar_t* __restrict__ d_x) {
  for (int j = 0; j < H; ++j) {
    scalar_t i = s[j], f = s[H + j], g = s[2 * H + j], o = s[3 * H + j], tc = s[4 * H + j];
    scalar_t dh = grad_out[j] + dh_next[j];
    scalar_t dc = dc_next[j] + dh * o * (scalar_t(1) - tc * tc);
    d_x[j] = dc * g * i * (scalar_t(1) - i);
    d_x[H + j] = dc * cp[j] * f * (scalar_t(1) - f);
    d_x[2 * H + j] = dc * i * (scalar_t(1) - g * g);
    d_x[3 * H + j] = dh * tc * o * (scalar_t(1) - o);
    dc_next[j] = dc * f;
  }
}

// d_h: the gradient of the recurrent part h W_hh^T + b_hh, which differs from d_x in the candidate block only
// (r scales the recurrent part of the candidate).
template <typename scalar_t>
inline void gru_step_back(int H, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ s,
                          const scalar_t* __restrict__ hp, scalar_t* __restrict__ dh_next,
                          scalar_t* __restrict__ d_x, scalar_t* __restrict__ d_h) {
  for (int j = 0; j < H; ++j) {
    scalar_t r = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
    scalar_t dh = grad_out[j] + dh_next[j];
    scalar_t dn = dh * (scalar_t(1) - z) * (scalar_t(1) - n * n);
    scalar_t dr = dn * hn * r * (scalar_t(1) - r);
    scalar_t dz = dh * (hp[j] - n) * z * (scalar_t(1) - z);
    d_x[j] = d_h[j] = dr;
    d_x[H + j] = d_h[H + j] = dz;
    d_x[2 * H + j] = dn;
    d_h[2 * H + j] = dn * r;
    dh_next[j] = dh * z;  // the direct path to h_{t-1}
  }
}

// sum[j] += the sum of the rows of a [rows, n] block with row stride ld: one step's share of a bias gradient,
// summed in the working precision over the block's rows, then in double over the B * T rows of all steps.
template <typename scalar_t>
void add_rows(int rows, int n, const scalar_t* a, int64_t ld, scalar_t* __restrict__ step, double* __restrict__ sum) {
  std::fill(step, step + n, scalar_t(0));
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < n; ++j) step[j] += a[b * ld + j];
  for (int j = 0; j < n; ++j) sum[j] += step[j];
}

enum class Cell { rnn, lstm, gru };

Cell parse_cell(const std::string& name) {
  TORCH_CHECK(name == "rnn" || name == "lstm" || name == "gru", "unknown cell ", name);
  return name == "rnn" ? Cell::rnn : name == "lstm" ? Cell::lstm : Cell::gru;
}
int gate_blocks(Cell cell) { return cell == Cell::lstm ? 4 : cell == Cell::gru ? 3 : 1; }
int saved_blocks(Cell cell) { return cell == Cell::lstm ? 5 : cell == Cell::gru ? 4 : 0; }  // per row and step, x H

struct Sizes {
  int T, E, H, g;
};

template <typename scalar_t>
void forward_rows(Cell cell, int64_t b0, int64_t b1, Sizes d, const scalar_t* x, const scalar_t* w_ih,
                  const scalar_t* b_ih, const scalar_t* w_hh, const scalar_t* b_hh, scalar_t* out, scalar_t* c,
                  scalar_t* saved) {
  const int rows = static_cast<int>(b1 - b0), T = d.T, E = d.E, H = d.H, gH = d.g * H, S = saved_blocks(cell) * H;
  const bool gru = cell == Cell::gru;
  StepMatmul<scalar_t> input(w_ih, /*transpose=*/true, E, rows, gH, E), recurrent(w_hh, true, H, rows, gH, H);
  // xw: x_t W_ih^T, to which the RNN and LSTM add h_{t-1} W_hh^T; the GRU keeps that in hh.
  std::vector<scalar_t> xw(static_cast<size_t>(rows) * gH), hh(gru ? xw.size() : 0, scalar_t(0));
  std::vector<scalar_t> bias(gH), zeros(H, scalar_t(0));
  for (int j = 0; j < gH; ++j) bias[j] = b_ih[j] + b_hh[j];
  for (int t = 0; t < T; ++t) {
    input(x + (b0 * T + t) * E, T * E, scalar_t(0), xw.data(), gH);
    if (t > 0) {  // h_{-1} = 0
      const scalar_t* hp = out + (b0 * T + t - 1) * H;
      recurrent(hp, T * H, scalar_t(gru ? 0 : 1), gru ? hh.data() : xw.data(), gH);
    }
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t at = b * T + t;
      const scalar_t* xw_b = xw.data() + (b - b0) * gH;
      if (cell == Cell::rnn) {
        rnn_step(H, xw_b, bias.data(), out + at * H);
      } else if (cell == Cell::lstm) {
        lstm_step(H, xw_b, bias.data(), t > 0 ? c + (at - 1) * H : zeros.data(), c + at * H, out + at * H,
                  saved + at * S);
      } else {
        gru_step(H, xw_b, hh.data() + (b - b0) * gH, b_ih, b_hh, t > 0 ? out + (at - 1) * H : zeros.data(),
                 out + at * H, saved + at * S);
      }
    }
  }
}

template <typename scalar_t>
void backward_rows(Cell cell, int64_t b0, int64_t b1, Sizes d, const scalar_t* grad_out, const scalar_t* x,
                   const scalar_t* out, const scalar_t* c, const scalar_t* saved, const scalar_t* w_ih,
                   const scalar_t* w_hh, scalar_t* d_x, scalar_t* d_h, scalar_t* grad_x, scalar_t* grad_w_ih,
                   scalar_t* grad_w_hh, double* grad_b_ih, double* grad_b_hh) {
  // d_x [B, T, gH]: the gradient of the gates' input part, x W_ih^T + b_ih; d_h of their recurrent part,
  // h W_hh^T + b_hh: for the GRU a tensor of its own, else d_x. grad_x may be null: x needs no gradient. The
  // weights' and biases' gradients are this block's share.
  const int rows = static_cast<int>(b1 - b0), T = d.T, E = d.E, H = d.H, gH = d.g * H, S = saved_blocks(cell) * H;
  StepMatmul<scalar_t> input(w_ih, /*transpose=*/false, E, rows, E, gH), recurrent(w_hh, false, H, rows, H, gH);
  // The gradient reaching h_{t-1} (and c_{t-1}) from step t, for each row of the block.
  std::vector<scalar_t> dh_next(static_cast<size_t>(rows) * H, scalar_t(0)), dc_next(dh_next.size(), scalar_t(0));
  std::vector<scalar_t> zeros(H, scalar_t(0)), step_sum(gH);
  for (int t = T - 1; t >= 0; --t) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t at = b * T + t;
      const scalar_t* go = grad_out + at * H;
      scalar_t* dn = dh_next.data() + (b - b0) * H;
      if (cell == Cell::rnn) {
        rnn_step_back(H, go, out + at * H, dn, d_x + at * gH);
      } else if (cell == Cell::lstm) {
        lstm_step_back(H, go, saved + at * S, t > 0 ? c + (at - 1) * H : zeros.data(), dn,
                       dc_next.data() + (b - b0) * H, d_x + at * gH);
      } else {
        gru_step_back(H, go, saved + at * S, t > 0 ? out + (at - 1) * H : zeros.data(), dn, d_x + at * gH,
                      d_h + at * gH);
      }
    }
    const int64_t first = b0 * T + t;  // the block's first row at step t
    add_rows(rows, gH, d_x + first * gH, int64_t(T) * gH, step_sum.data(), grad_b_ih);
    if (d_h != d_x) add_rows(rows, gH, d_h + first * gH, int64_t(T) * gH, step_sum.data(), grad_b_hh);
    if (grad_x != nullptr) input(d_x + first * gH, T * gH, scalar_t(0), grad_x + first * E, T * E);
    if (t > 0) recurrent(d_h + first * gH, T * gH, scalar_t(cell == Cell::gru ? 1 : 0), dh_next.data(), H);
  }
  // The weights' gradients, each one matmul over all the block's rows and steps. W_ih's pairs step t's gates with
  // x_t. W_hh's pairs them with h_{t-1}, the row before in [B, T] order, so the block's rows one row apart; which
  // pairs each row's step 0 with the previous row's last state, so step 0's gates (h_{-1} = 0: they add nothing)
  // are zeroed first. d_x and d_h are this function's own.
  add_transposed_product(rows * T, gH, E, d_x + b0 * T * gH, x + b0 * T * E, grad_w_ih);
  for (int64_t b = b0; b < b1; ++b) std::fill(d_h + b * T * gH, d_h + (b * T + 1) * gH, scalar_t(0));
  add_transposed_product(rows * T - 1, gH, H, d_h + (b0 * T + 1) * gH, out + b0 * T * H, grad_w_hh);
}

// Runs fn(b0, b1, thread) on blocks of rows, one per thread, MKL single-threaded inside each.
template <typename F>
void over_row_blocks(int64_t rows, const F& fn) {
  constexpr int64_t kGrain = 8;  // rows per thread at least: fewer make each step's matmuls too small
  at::parallel_for(0, rows, kGrain, [&](int64_t b0, int64_t b1) {
    int before = MKL_Set_Num_Threads_Local(1);
    fn(b0, b1, at::get_thread_num());
    MKL_Set_Num_Threads_Local(before);
  });
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "rnnlab_sequence: ", what); }

Sizes sizes(Cell cell, const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh) {
  Sizes d{static_cast<int>(x.size(1)), static_cast<int>(x.size(2)), static_cast<int>(w_hh.size(1)), gate_blocks(cell)};
  check(x.dim() == 3 && w_ih.size(0) == d.g * d.H && w_ih.size(1) == d.E && w_hh.size(0) == d.g * d.H,
        "x [B, T, E], w_ih [gH, E], w_hh [gH, H]");
  return d;
}

void check_tensors(std::initializer_list<at::Tensor> tensors, const at::Tensor& like) {
  for (const at::Tensor& t : tensors) {
    check(t.device().is_cpu() && t.is_contiguous(), "contiguous CPU tensors");
    check(t.scalar_type() == like.scalar_type(), "tensors of one dtype");
  }
}

// -> out [B, T, H], c [B, T, H] (LSTM; else empty), saved [B, T, saved_blocks * H]
std::vector<at::Tensor> forward(std::string name, at::Tensor x, at::Tensor w_ih, at::Tensor b_ih, at::Tensor w_hh,
                                at::Tensor b_hh) {
  const Cell cell = parse_cell(name);
  check_tensors({x, w_ih, b_ih, w_hh, b_hh}, x);
  const Sizes d = sizes(cell, x, w_ih, w_hh);
  const int64_t B = x.size(0);
  at::Tensor out = at::empty({B, d.T, d.H}, x.options());
  at::Tensor c = at::empty({cell == Cell::lstm ? B : 0, d.T, d.H}, x.options());
  at::Tensor saved = at::empty({B, d.T, saved_blocks(cell) * d.H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnlab_sequence_forward", [&] {
    over_row_blocks(B, [&](int64_t b0, int64_t b1, int) {
      forward_rows<scalar_t>(cell, b0, b1, d, x.const_data_ptr<scalar_t>(), w_ih.const_data_ptr<scalar_t>(),
                             b_ih.const_data_ptr<scalar_t>(), w_hh.const_data_ptr<scalar_t>(),
                             b_hh.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                             saved.data_ptr<scalar_t>());
    });
  });
  return {out, c, saved};
}

// -> grad_x [B, T, E] (empty unless needed), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
std::vector<at::Tensor> backward(std::string name, at::Tensor grad_out, at::Tensor x, at::Tensor out, at::Tensor c,
                                 at::Tensor saved, at::Tensor w_ih, at::Tensor w_hh, bool need_grad_x) {
  const Cell cell = parse_cell(name);
  check_tensors({grad_out, x, out, c, saved, w_ih, w_hh}, x);
  const Sizes d = sizes(cell, x, w_ih, w_hh);
  const int64_t B = x.size(0), gH = int64_t(d.g) * d.H, threads = at::get_num_threads();
  at::Tensor grad_x = need_grad_x ? at::empty_like(x) : at::empty({0}, x.options());
  at::Tensor d_x = at::empty({B, d.T, gH}, x.options());
  at::Tensor d_h = cell == Cell::gru ? at::empty_like(d_x) : d_x;
  // Each thread's share of the weights' and biases' gradients, summed after.
  at::Tensor w_partial = at::zeros({threads, gH * (d.E + d.H)}, x.options());  // W_ih's, then W_hh's
  at::Tensor b_partial = at::zeros({threads, 2, gH}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnlab_sequence_backward", [&] {
    over_row_blocks(B, [&](int64_t b0, int64_t b1, int thread) {
      scalar_t* w = w_partial.data_ptr<scalar_t>() + thread * gH * (d.E + d.H);
      double* b = b_partial.data_ptr<double>() + thread * 2 * gH;
      backward_rows<scalar_t>(cell, b0, b1, d, grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                              out.const_data_ptr<scalar_t>(), c.const_data_ptr<scalar_t>(),
                              saved.const_data_ptr<scalar_t>(), w_ih.const_data_ptr<scalar_t>(),
                              w_hh.const_data_ptr<scalar_t>(), d_x.data_ptr<scalar_t>(), d_h.data_ptr<scalar_t>(),
                              need_grad_x ? grad_x.data_ptr<scalar_t>() : nullptr, w, w + gH * d.E, b, b + gH);
    });
  });
  at::Tensor grad_w = w_partial.sum(0);
  at::Tensor grad_w_ih = grad_w.slice(0, 0, gH * d.E).view({gH, d.E});
  at::Tensor grad_w_hh = grad_w.slice(0, gH * d.E).view({gH, d.H});
  at::Tensor grad_b = b_partial.sum(0).to(x.scalar_type());
  at::Tensor grad_b_ih = grad_b[0], grad_b_hh = cell == Cell::gru ? grad_b[1] : grad_b[0].clone();
  return {grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh};
}

}  // namespace

TORCH_LIBRARY(rnnlab_sequence, m) {
  m.def("forward(str cell, Tensor x, Tensor w_ih, Tensor b_ih, Tensor w_hh, Tensor b_hh) -> Tensor[]", &forward);
  m.def("backward(str cell, Tensor grad_out, Tensor x, Tensor out, Tensor c, Tensor saved, Tensor w_ih, "
        "Tensor w_hh, bool need_grad_x) -> Tensor[]", &backward);
}
