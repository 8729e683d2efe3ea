// Forward-only LSTM and GRU recurrences, for inference on the CPU.
//
// Whole sequences (lstm_sequence, gru_sequence): the recurrent matmul on W packed into panels,
// each step's element-wise part in one pass over a row, the batch rows split between threads
// for all steps. One step (lstm_step): the element-wise part only, for the LSTM with a
// projection, whose matmuls stay torch's. The arithmetic is the fused kernels' (fused_lstm.py,
// fused_gru.py); cpu_kernels.py holds the contract and the measurements, this file the loops.
//
// Compiled on first use with the machine's C++ compiler (no torch headers: plain pointers and
// sizes in a struct filled once per sequence), then cached; see cpu_kernels.py.

#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

// Rows are split between threads (OpenMP, the runtime torch uses) from this many elements a step.
constexpr std::int64_t kParallelWork = 1024;

// exp for float in a form the compiler vectorises (Cephes' expf: range reduction by ln 2, a
// degree-6 polynomial, the exponent written into the bits); relative error about 2e-7.
inline float exp_(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  x -= n * 0.693359375f;
  x -= n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  p = p * x * x + x + 1.0f;
  std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline double exp_(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

inline float tanh_(float x) { return 2.0f / (1.0f + exp_(-2.0f * x)) - 1.0f; }
inline double tanh_(double x) { return std::tanh(x); }

// Mean and 1/sqrt(var + eps) of n values (the biased variance, as torch's layer_norm), in one
// pass: sums of the values shifted by the first one (the shifted-data algorithm, which keeps
// the subtraction small where the mean is large against the spread).
template <typename T>
inline void moments(const T* v, std::int64_t n, T eps, T* mean, T* rstd) {
  const T shift = v[0];
  T sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum, sq)
  for (std::int64_t j = 0; j < n; ++j) {
    const T d = v[j] - shift;
    sum += d;
    sq += d * d;
  }
  const T var = (sq - sum * sum / T(n)) / T(n);
  *mean = shift + sum / T(n);
  *rstd = T(1) / std::sqrt((var > T(0) ? var : T(0)) + eps);
}

// moments() of two rows of n values at once: four independent sums in one loop.
template <typename T>
inline void moments2(const T* u, const T* v, std::int64_t n, T eps, T* mean_u, T* rstd_u,
                     T* mean_v, T* rstd_v) {
  const T shift_u = u[0], shift_v = v[0];
  T sum_u = 0, sq_u = 0, sum_v = 0, sq_v = 0;
#pragma omp simd reduction(+ : sum_u, sq_u, sum_v, sq_v)
  for (std::int64_t j = 0; j < n; ++j) {
    const T du = u[j] - shift_u, dv = v[j] - shift_v;
    sum_u += du;
    sq_u += du * du;
    sum_v += dv;
    sq_v += dv * dv;
  }
  const T var_u = (sq_u - sum_u * sum_u / T(n)) / T(n);
  const T var_v = (sq_v - sum_v * sum_v / T(n)) / T(n);
  *mean_u = shift_u + sum_u / T(n);
  *rstd_u = T(1) / std::sqrt((var_u > T(0) ? var_u : T(0)) + eps);
  *mean_v = shift_v + sum_v / T(n);
  *rstd_v = T(1) / std::sqrt((var_v > T(0) ? var_v : T(0)) + eps);
}

// One LSTM step. Gate blocks in the fused kernel's order (o, i, f, g), coupled (o, f, g); the
// candidate's pre-activations arrive doubled, g = 2σ(a_g) - 1 = tanh(a_g / 2 · 2).
//   a = a_x + r,   layer norm: a = LN(a_x) ⊙ g_ih + b + LN(r) ⊙ g_hh per block, a_x = W_ih x_t
//   (r = W_hh h_{t-1}; the gains, the bias and the weights carry the doubling)
//   i, f = σ(a_i + w_ci ⊙ c_{t-1}), σ(a_f + w_cf ⊙ c_{t-1})   (coupled: i = 1 - f)
//   c̃ = f ⊙ c_{t-1} + i ⊙ g,   o = σ(a_o + w_co ⊙ c̃)
//   m = o ⊙ tanh(c̃)   (layer norm: tanh(LN(c̃) ⊙ g_c + b_c))
//   c_t = c̃ + keep_c ⊙ (c_{t-1} - c̃);   without a projection h_t = m + keep_h ⊙ (h_{t-1} - m)
template <typename T>
struct LSTMStep {
  std::int64_t batch, hidden, blocks, coupled, threads;
  const T* gain_ih;    // layer norm: (blocks·H), else null
  const T* bias;       // layer norm: (blocks·H) or null (without layer norm a_x holds it)
  const T* gain_hh;    // layer norm: (blocks·H), else null
  const T* w_ci;       // peephole (H) or null (null when coupled)
  const T* w_cf;       // peephole (H) or null
  const T* w_co;       // peephole (H) or null
  const T* gain_c;     // cell layer norm (H) or null
  const T* bias_c;     // cell layer norm (H) or null
  T eps;
  T* c;              // (B, H): c_{t-1} in, c_t out
  const T* keep_c;   // (T, B, H) or null
  T* m;              // (B, H) when there is a projection, else null (m goes to h)
  T* h;              // (T, B, H) every h_t (without a projection)
  const T* h0;       // (B, H) h before the first step (without a projection)
  const T* keep_h;   // (T, B, H) or null (without a projection)
  T* row;            // (B, H) scratch: c̃
};

// Row b of step t: a (blocks·H) its input side a_x, overwritten (o ends there); r (blocks·H)
// its W_hh h_{t-1}, or null when a holds the whole pre-activations.
template <typename T>
void lstm_row(const LSTMStep<T>& s, std::int64_t t, std::int64_t b, T* a, const T* r) {
  const std::int64_t B = s.batch, H = s.hidden, G = s.blocks * H;
  const std::int64_t at = t * B;  // first row of step t in (T, B, ·) tensors
  const std::int64_t fo = s.coupled ? H : 2 * H, go = fo + H;  // f and g block offsets
  if (r != nullptr && s.gain_hh == nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < G; ++j) a[j] += r[j];
  } else if (r != nullptr) {  // layer norm: both sides, block by block
    for (std::int64_t q = 0; q < s.blocks; ++q) {
      T* aq = a + q * H;
      const T* rq = r + q * H;
      const T* gain_x = s.gain_ih + q * H;
      const T* gain_h = s.gain_hh + q * H;
      T mean_x, rstd_x, mean_h, rstd_h;
      moments2(aq, rq, H, s.eps, &mean_x, &rstd_x, &mean_h, &rstd_h);
      if (s.bias != nullptr) {
        const T* bq = s.bias + q * H;
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j)
          aq[j] = (aq[j] - mean_x) * rstd_x * gain_x[j] + bq[j] +
                  (rq[j] - mean_h) * rstd_h * gain_h[j];
      } else {
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j)
          aq[j] = (aq[j] - mean_x) * rstd_x * gain_x[j] + (rq[j] - mean_h) * rstd_h * gain_h[j];
      }
    }
  }
  T* c = s.c + b * H;
  T* cn = s.row + b * H;
  T* ao = a;
  const T* af = a + fo;
  const T* ag = a + go;
  const T* ai = a + H;
  // Four loops rather than one with branches inside, so that each vectorises and none reads
  // a peephole weight the configuration lacks.
  const T* wi = s.w_ci;
  const T* wf = s.w_cf;
  const T* wo = s.w_co;
  if (wf != nullptr && s.coupled) {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const T f = sigmoid_(af[j] + wf[j] * c[j]);
      const T g = T(2) * sigmoid_(ag[j]) - T(1);
      cn[j] = f * c[j] + (T(1) - f) * g;
      ao[j] = sigmoid_(ao[j] + wo[j] * cn[j]);
    }
  } else if (wf != nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const T i = sigmoid_(ai[j] + wi[j] * c[j]);
      const T f = sigmoid_(af[j] + wf[j] * c[j]);
      const T g = T(2) * sigmoid_(ag[j]) - T(1);
      cn[j] = f * c[j] + i * g;
      ao[j] = sigmoid_(ao[j] + wo[j] * cn[j]);
    }
  } else if (s.coupled) {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const T f = sigmoid_(af[j]);
      const T g = T(2) * sigmoid_(ag[j]) - T(1);
      cn[j] = f * c[j] + (T(1) - f) * g;
      ao[j] = sigmoid_(ao[j]);
    }
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const T i = sigmoid_(ai[j]);
      const T f = sigmoid_(af[j]);
      const T g = T(2) * sigmoid_(ag[j]) - T(1);
      cn[j] = f * c[j] + i * g;
      ao[j] = sigmoid_(ao[j]);
    }
  }
  T* m = s.m != nullptr ? s.m + b * H : s.h + (at + b) * H;
  if (s.gain_c != nullptr) {
    T mean, rstd;
    moments(cn, H, s.eps, &mean, &rstd);
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j)
      m[j] = ao[j] * tanh_((cn[j] - mean) * rstd * s.gain_c[j] + s.bias_c[j]);
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) m[j] = ao[j] * tanh_(cn[j]);
  }
  if (s.m == nullptr && s.keep_h != nullptr) {
    const T* k = s.keep_h + (at + b) * H;
    const T* hp = t == 0 ? s.h0 + b * H : s.h + (at - B + b) * H;
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) m[j] += k[j] * (hp[j] - m[j]);
  }
  if (s.keep_c != nullptr) {
    const T* k = s.keep_c + (at + b) * H;
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) c[j] = cn[j] + k[j] * (c[j] - cn[j]);
  } else {
    std::memcpy(c, cn, sizeof(T) * H);
  }
}

// Step t of the LSTM with a projection, between torch's matmuls: gates (B, blocks·H) and
// recurrent (B, blocks·H) or null, row by row as lstm_row. Adding the product here rather than
// in the matmul: oneDNN's matmul with an added operand took 14.5 ms for 100 steps at B = 32,
// H = 256 where the plain one took 11.5 (AMD EPYC, two threads).
template <typename T>
void lstm_step(const LSTMStep<T>& s, std::int64_t t, T* gates, const T* recurrent) {
  const std::int64_t B = s.batch, H = s.hidden, G = s.blocks * H;
#pragma omp parallel for num_threads(s.threads) if (s.threads > 1 && B * H >= kParallelWork)
  for (std::int64_t b = 0; b < B; ++b)
    lstm_row(s, t, b, gates + b * G, recurrent != nullptr ? recurrent + b * G : nullptr);
}

// One GRU step's element-wise parts, in fused_gru.py's arithmetic. The step's input side (with
// the biases that do not wait for r) is in rz (T, B, 2H) and n (T, B, H).
//   reset_before, around W_hn (r ⊙ h_{t-1}), the products added into rz and n by the matmuls:
//     gates:   r, z = σ(rz),   rh = r ⊙ h_{t-1}
//     update:  n = tanh(n)
//   reset_after (torch's form; p = W_hh h_{t-1}, all three blocks):
//     update:  r, z = σ(rz + p_rz),   n = tanh(n + r ⊙ (p_n + b_hn))
//   then h_t = n + z' ⊙ (h_{t-1} - n),   z' = z + keep ⊙ (1 - z)
template <typename T>
struct GRUStep {
  std::int64_t batch, hidden, reset_before, threads;
  T* rz;             // (T, B, 2H) r and z input side, overwritten with r, z
  T* n;              // (T, B, H) n input side (reset_before: with b_hn), overwritten with n
  const T* b_hn;     // reset_after: (H) or null
  T* rh;             // (B, H) r ⊙ h_{t-1} (reset_before)
  T* h;              // (T + 1, B, H): h_0 then every h_t
  const T* keep;     // (T, B, H) or null
};

// Row b of step t's gates (reset_before).
template <typename T>
void gru_gates_row(const GRUStep<T>& s, std::int64_t t, std::int64_t b) {
  const std::int64_t B = s.batch, H = s.hidden;
  T* rz = s.rz + (t * B + b) * 2 * H;
  const T* hp = s.h + (t * B + b) * H;
  T* rh = s.rh + b * H;
#pragma omp simd
  for (std::int64_t j = 0; j < 2 * H; ++j) rz[j] = sigmoid_(rz[j]);
#pragma omp simd
  for (std::int64_t j = 0; j < H; ++j) rh[j] = rz[j] * hp[j];
}

// Row b of step t's update; reset_after: p (3H) its W_hh h_{t-1}, else null.
template <typename T>
void gru_update_row(const GRUStep<T>& s, std::int64_t t, std::int64_t b, const T* p) {
  const std::int64_t B = s.batch, H = s.hidden;
  T* rz = s.rz + (t * B + b) * 2 * H;
  T* n = s.n + (t * B + b) * H;
  const T* hp = s.h + (t * B + b) * H;
  T* h = s.h + ((t + 1) * B + b) * H;
  const T* k = s.keep != nullptr ? s.keep + (t * B + b) * H : nullptr;
  if (s.reset_before) {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j]);
  } else {
    const T* pn = p + 2 * H;
#pragma omp simd
    for (std::int64_t j = 0; j < 2 * H; ++j) rz[j] = sigmoid_(rz[j] + p[j]);
    if (s.b_hn != nullptr) {
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j] + rz[j] * (pn[j] + s.b_hn[j]));
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j] + rz[j] * pn[j]);
    }
  }
  const T* z = rz + H;
  if (k != nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const T w = z[j] + k[j] * (T(1) - z[j]);
      h[j] = n[j] + w * (hp[j] - n[j]);
    }
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) h[j] = n[j] + z[j] * (hp[j] - n[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole sequences: the recurrent matmul here too, so a sequence is one call.
//
// A batch row's recurrence never reads another row, so each thread takes a block of rows through
// all T steps with no synchronisation at all. The matmul y (rows, N) (+)= x (rows, K) Wᵀ runs on
// W packed into panels of V = 64 bytes of columns, panel p holding W[pV + v, k] at [k·V + v]
// (packed by cpu_kernels.py), eight rows at a time with the eight V-wide accumulators in
// registers. Two threads, AMD EPYC (AVX-512), B = 32: K = 64, N = 256 in 8.1 µs a step; K = 256,
// N = 1024 in 82.5 µs (oneDNN's packed matmul called per step from Python: 105 to 115 µs);
// K = 512, N = 2048, B = 64 in 629 µs.

template <typename T>
constexpr std::int64_t kPanel = 64 / sizeof(T);  // columns per panel: one 512-bit register

// R rows of y's columns [panel·V, panel·V + cols): y[r] (+)= x[r] · panelᵀ.
template <typename T, int R>
inline void panel_rows(const T* x, std::int64_t ldx, const T* panel, std::int64_t K, T* y,
                       std::int64_t ldy, std::int64_t cols, bool accumulate) {
  constexpr std::int64_t V = kPanel<T>;
  T acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma omp simd
    for (std::int64_t v = 0; v < V; ++v) acc[r][v] = T(0);
  for (std::int64_t k = 0; k < K; ++k) {
    const T* w = panel + k * V;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const T xr = x[r * ldx + k];
#pragma omp simd
      for (std::int64_t v = 0; v < V; ++v) acc[r][v] += xr * w[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    T* yr = y + r * ldy;
    if (accumulate) {
      for (std::int64_t v = 0; v < cols; ++v) yr[v] += acc[r][v];
    } else {
      for (std::int64_t v = 0; v < cols; ++v) yr[v] = acc[r][v];
    }
  }
}

// y (rows, N) (+)= x (rows, K) Wᵀ with W (N, K) in panels.
template <typename T>
void matmul_rows(const T* x, std::int64_t ldx, std::int64_t rows, const T* panels,
                 std::int64_t K, std::int64_t N, T* y, std::int64_t ldy, bool accumulate) {
  constexpr std::int64_t V = kPanel<T>;
  for (std::int64_t j = 0; j < N; j += V) {  // a panel stays in cache for all the rows
    const T* panel = panels + j * K;
    const std::int64_t cols = N - j < V ? N - j : V;
    std::int64_t r = 0;
    for (; r + 8 <= rows; r += 8)
      panel_rows<T, 8>(x + r * ldx, ldx, panel, K, y + r * ldy + j, ldy, cols, accumulate);
    for (; r + 4 <= rows; r += 4)
      panel_rows<T, 4>(x + r * ldx, ldx, panel, K, y + r * ldy + j, ldy, cols, accumulate);
    for (; r < rows; ++r)
      panel_rows<T, 1>(x + r * ldx, ldx, panel, K, y + r * ldy + j, ldy, cols, accumulate);
  }
}

// The rows [first, last) a thread takes: contiguous blocks, as even as the batch allows.
inline void thread_rows(std::int64_t B, std::int64_t* first, std::int64_t* last) {
#ifdef _OPENMP
  const std::int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
#else
  const std::int64_t n = 1, i = 0;
#endif
  *first = B * i / n;
  *last = B * (i + 1) / n;
}

template <typename T>
int sequence_threads(std::int64_t threads, std::int64_t B, std::int64_t H) {
  if (threads < 2 || B * H < kParallelWork) return 1;
  return static_cast<int>(threads < B ? threads : B);
}

// The LSTM without a projection over steps [first, last): gates (last - first, B, G) their
// input side (overwritten); panels W_hh's; recurrent (B, G) scratch for layer norm, else null.
template <typename T>
void lstm_sequence(const LSTMStep<T>& s, std::int64_t first, std::int64_t last, T* gates,
                   const T* panels, T* recurrent) {
  const std::int64_t B = s.batch, H = s.hidden, G = s.blocks * H;
#pragma omp parallel num_threads(sequence_threads<T>(s.threads, B, H))
  {
    std::int64_t b0, b1;
    thread_rows(B, &b0, &b1);
    for (std::int64_t t = first; t < last && b0 < b1; ++t) {
      const T* hp = t == 0 ? s.h0 + b0 * H : s.h + ((t - 1) * B + b0) * H;
      T* a = gates + ((t - first) * B + b0) * G;
      if (recurrent == nullptr) {  // W_hh h_{t-1} added onto the input side
        matmul_rows(hp, H, b1 - b0, panels, H, G, a, G, true);
        for (std::int64_t b = b0; b < b1; ++b) lstm_row<T>(s, t, b, a + (b - b0) * G, nullptr);
      } else {
        T* r = recurrent + b0 * G;
        matmul_rows(hp, H, b1 - b0, panels, H, G, r, G, false);
        for (std::int64_t b = b0; b < b1; ++b)
          lstm_row(s, t, b, a + (b - b0) * G, r + (b - b0) * G);
      }
    }
  }
}

// The GRU over T steps. reset_before: panels_a W_hrz's, panels_b W_hn's; reset_after: panels_a
// W_hh's and scratch (B, 3H).
template <typename T>
void gru_sequence(const GRUStep<T>& s, std::int64_t steps, const T* panels_a,
                  const T* panels_b, T* scratch) {
  const std::int64_t B = s.batch, H = s.hidden;
#pragma omp parallel num_threads(sequence_threads<T>(s.threads, B, H))
  {
    std::int64_t b0, b1;
    thread_rows(B, &b0, &b1);
    for (std::int64_t t = 0; t < steps && b0 < b1; ++t) {
      const T* hp = s.h + (t * B + b0) * H;
      if (s.reset_before) {
        matmul_rows(hp, H, b1 - b0, panels_a, H, 2 * H, s.rz + (t * B + b0) * 2 * H, 2 * H,
                    true);
        for (std::int64_t b = b0; b < b1; ++b) gru_gates_row(s, t, b);
        matmul_rows(s.rh + b0 * H, H, b1 - b0, panels_b, H, H, s.n + (t * B + b0) * H, H,
                    true);
        for (std::int64_t b = b0; b < b1; ++b) gru_update_row<T>(s, t, b, nullptr);
      } else {
        T* p = scratch + b0 * 3 * H;
        matmul_rows(hp, H, b1 - b0, panels_a, H, 3 * H, p, 3 * H, false);
        for (std::int64_t b = b0; b < b1; ++b)
          gru_update_row(s, t, b, p + (b - b0) * 3 * H);
      }
    }
  }
}

}  // namespace

extern "C" {

// The calls cpu_kernels.py makes through ctypes: a struct filled once per sequence and a step.
int rnnkit_kernels_abi() { return 5; }
void rnnkit_lstm_step_f32(const LSTMStep<float>* s, std::int64_t t, float* a, const float* r) {
  lstm_step(*s, t, a, r);
}
void rnnkit_lstm_step_f64(const LSTMStep<double>* s, std::int64_t t, double* a, const double* r) {
  lstm_step(*s, t, a, r);
}
void rnnkit_lstm_sequence_f32(const LSTMStep<float>* s, std::int64_t first, std::int64_t last,
                              float* gates, const float* panels, float* recurrent) {
  lstm_sequence(*s, first, last, gates, panels, recurrent);
}
void rnnkit_lstm_sequence_f64(const LSTMStep<double>* s, std::int64_t first, std::int64_t last,
                              double* gates, const double* panels, double* recurrent) {
  lstm_sequence(*s, first, last, gates, panels, recurrent);
}
void rnnkit_gru_sequence_f32(const GRUStep<float>* s, std::int64_t steps, const float* panels_a,
                             const float* panels_b, float* scratch) {
  gru_sequence(*s, steps, panels_a, panels_b, scratch);
}
void rnnkit_gru_sequence_f64(const GRUStep<double>* s, std::int64_t steps,
                             const double* panels_a, const double* panels_b, double* scratch) {
  gru_sequence(*s, steps, panels_a, panels_b, scratch);
}
}
