// Forward-only steps of the LSTM and GRU recurrences, for inference on the CPU.
//
// Each function is the element-wise part of one time step: the matmuls stay in torch (oneDNN or
// BLAS, called from rnnkit/backends/cpu_kernels.py between these calls), and everything between
// two matmuls runs here as one pass over a row, where torch's eager ops would take five to ten
// passes and as many dispatches. The arithmetic is the fused kernels' (fused_lstm.py,
// fused_gru.py); the Python module holds the contract, this file only the loops.
//
// Compiled on first use with the machine's C++ compiler (no torch headers: plain pointers and
// sizes in a struct filled once per sequence), then cached; see cpu_kernels.py.

#include <cmath>
#include <cstdint>
#include <cstring>

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

// Mean and 1/sqrt(var + eps) of n values (the biased variance, as torch's layer_norm).
template <typename T>
inline void moments(const T* v, std::int64_t n, T eps, T* mean, T* rstd) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::int64_t j = 0; j < n; ++j) sum += v[j];
  const T mu = sum / T(n);
  T sq = 0;
#pragma omp simd reduction(+ : sq)
  for (std::int64_t j = 0; j < n; ++j) sq += (v[j] - mu) * (v[j] - mu);
  *mean = mu;
  *rstd = T(1) / std::sqrt(sq / T(n) + eps);
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

// Step t; gates (B, blocks·H): its input side a_x, overwritten (o ends there); recurrent
// (B, blocks·H): W_hh h_{t-1}, or null when gates holds the whole pre-activations. Adding the
// product here rather than in the matmul: oneDNN's matmul with an added operand took 14.5 ms
// for 100 steps at B = 32, H = 256 where the plain one took 11.5 (AMD EPYC, two threads).
template <typename T>
void lstm_step(const LSTMStep<T>& s, std::int64_t t, T* gates, const T* recurrent) {
  const std::int64_t B = s.batch, H = s.hidden, G = s.blocks * H;
  const std::int64_t at = t * B;  // first row of step t in (T, B, ·) tensors
  const std::int64_t fo = s.coupled ? H : 2 * H, go = fo + H;  // f and g block offsets
#pragma omp parallel for num_threads(s.threads) if (s.threads > 1 && B * H >= kParallelWork)
  for (std::int64_t b = 0; b < B; ++b) {
    T* a = gates + b * G;
    if (recurrent != nullptr && s.gain_hh == nullptr) {
      const T* r = recurrent + b * G;
#pragma omp simd
      for (std::int64_t j = 0; j < G; ++j) a[j] += r[j];
    } else if (recurrent != nullptr) {  // layer norm: both sides, block by block
      const T* r = recurrent + b * G;
      for (std::int64_t q = 0; q < s.blocks; ++q) {
        T* aq = a + q * H;
        const T* rq = r + q * H;
        const T* gain_x = s.gain_ih + q * H;
        const T* gain_h = s.gain_hh + q * H;
        T mean_x, rstd_x, mean_h, rstd_h;
        moments(aq, H, s.eps, &mean_x, &rstd_x);
        moments(rq, H, s.eps, &mean_h, &rstd_h);
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
}

// One GRU step around its matmuls, in fused_gru.py's arithmetic. The step's input side (with
// the biases added) is in rz (T, B, 2H) and n (T, B, H); the matmuls' products come per call.
//   reset_before, around W_hn (r ⊙ h_{t-1}) (p, q null: already added into rz, n):
//     gates (p = W_hrz h_{t-1}):  r, z = σ(rz + p),   rh = r ⊙ h_{t-1}
//     update (q = W_hn rh):       n = tanh(n + q)
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

// Step t's gates (reset_before): p (B, 2H) = W_hrz h_{t-1}.
template <typename T>
void gru_gates(const GRUStep<T>& s, std::int64_t t, const T* p_all) {
  const std::int64_t B = s.batch, H = s.hidden;
#pragma omp parallel for num_threads(s.threads) if (s.threads > 1 && B * H >= kParallelWork)
  for (std::int64_t b = 0; b < B; ++b) {
    T* rz = s.rz + (t * B + b) * 2 * H;
    const T* p = p_all != nullptr ? p_all + b * 2 * H : nullptr;
    const T* hp = s.h + (t * B + b) * H;
    T* rh = s.rh + b * H;
    if (p != nullptr) {
#pragma omp simd
      for (std::int64_t j = 0; j < 2 * H; ++j) rz[j] = sigmoid_(rz[j] + p[j]);
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < 2 * H; ++j) rz[j] = sigmoid_(rz[j]);
    }
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) rh[j] = rz[j] * hp[j];
  }
}

// Step t's update: reset_before q (B, H) = W_hn rh; reset_after p (B, 3H) = W_hh h_{t-1}.
template <typename T>
void gru_update(const GRUStep<T>& s, std::int64_t t, const T* p_all, const T* q_all) {
  const std::int64_t B = s.batch, H = s.hidden;
#pragma omp parallel for num_threads(s.threads) if (s.threads > 1 && B * H >= kParallelWork)
  for (std::int64_t b = 0; b < B; ++b) {
    T* rz = s.rz + (t * B + b) * 2 * H;
    T* n = s.n + (t * B + b) * H;
    const T* hp = s.h + (t * B + b) * H;
    T* h = s.h + ((t + 1) * B + b) * H;
    const T* k = s.keep != nullptr ? s.keep + (t * B + b) * H : nullptr;
    if (s.reset_before && q_all != nullptr) {
      const T* q = q_all + b * H;
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j] + q[j]);
    } else if (s.reset_before) {
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) n[j] = tanh_(n[j]);
    } else {
      const T* p = p_all + b * 3 * H;
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
}

}  // namespace

extern "C" {

// The calls cpu_kernels.py makes through ctypes: a struct filled once per sequence and a step.
int rnnkit_kernels_abi() { return 3; }
void rnnkit_lstm_step_f32(const LSTMStep<float>* s, std::int64_t t, float* a, const float* r) {
  lstm_step(*s, t, a, r);
}
void rnnkit_lstm_step_f64(const LSTMStep<double>* s, std::int64_t t, double* a, const double* r) {
  lstm_step(*s, t, a, r);
}
void rnnkit_gru_gates_f32(const GRUStep<float>* s, std::int64_t t, const float* p) {
  gru_gates(*s, t, p);
}
void rnnkit_gru_gates_f64(const GRUStep<double>* s, std::int64_t t, const double* p) {
  gru_gates(*s, t, p);
}
void rnnkit_gru_update_f32(const GRUStep<float>* s, std::int64_t t, const float* p,
                           const float* q) {
  gru_update(*s, t, p, q);
}
void rnnkit_gru_update_f64(const GRUStep<double>* s, std::int64_t t, const double* p,
                           const double* q) {
  gru_update(*s, t, p, q);
}
}
