// Batch-invariant bf16 linear layer on AMX tiles (runners/engines/amx_tiles.py builds and loads it): every output row
// is reduced over K in one fixed order (32 inputs per tile step, ascending, into a float32 tile; bias added in float32;
// rounded to bf16 to nearest even), whatever the number of rows, so a row's result does not depend on the rows beside
// it. Threads split the output's 32-feature column blocks, never a row's sum.
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles: 0-3 accumulators (C[a][b] = tile 2a+b), 4-5 rows of x (A0, A1), 6-7 packed weight blocks (B0, B1).
void configure(int rows0, int rows1) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  const int rows[2] = {rows0, rows1};
  for (int a = 0; a < 2; ++a) {
    if (rows[a] == 0) continue;
    for (int b = 0; b < 2; ++b) {
      cfg.rows[2 * a + b] = rows[a];
      cfg.colsb[2 * a + b] = 64;
    }
    cfg.rows[4 + a] = rows[a];
    cfg.colsb[4 + a] = 64;
  }
  for (int b = 0; b < 2; ++b) {
    cfg.rows[6 + b] = 16;
    cfg.colsb[6 + b] = 64;
  }
  _tile_loadconfig(&cfg);
}

inline void store_rows(const float* acc, int rows, const float* bias, at::BFloat16* out, int64_t ld) {
  for (int r = 0; r < rows; ++r) {
    __m512 v = _mm512_loadu_ps(acc + 16 * r);
    if (bias != nullptr) v = _mm512_add_ps(v, _mm512_loadu_ps(bias));
    __m256bh h = _mm512_cvtneps_pbh(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * ld), reinterpret_cast<__m256i&>(h));
  }
}

}  // namespace

// weight [N, K] bf16 -> [N/16][K/32][16][32]: block (nb, kb) row p holds W[nb*16 + j][kb*32 + 2p + t] at 2j + t,
// the pair layout AMX's TDPBF16PS reads its second operand in.
torch::Tensor pack_weight(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kBFloat16, "a 2-D bf16 weight");
  const int64_t n = weight.size(0), k = weight.size(1);
  TORCH_CHECK(n % 16 == 0 && k % 32 == 0, "weight shape must be a multiple of 16 x 32, got ", n, "x", k);
  auto w = weight.contiguous();
  auto packed = torch::empty({n / 16, k / 32, 16, 32}, weight.options());
  const at::BFloat16* src = w.data_ptr<at::BFloat16>();
  at::BFloat16* dst = packed.data_ptr<at::BFloat16>();
  for (int64_t nb = 0; nb < n / 16; ++nb)
    for (int64_t kb = 0; kb < k / 32; ++kb)
      for (int p = 0; p < 16; ++p)
        for (int j = 0; j < 16; ++j)
          for (int t = 0; t < 2; ++t)
            dst[(((nb * (k / 32) + kb) * 16 + p) * 32) + 2 * j + t] = src[(nb * 16 + j) * k + kb * 32 + 2 * p + t];
  return packed;
}

// out[M, N] = x[M, K] @ weight.T + bias, from pack_weight's layout; bias (optional) is float32 [N].
void linear_into(torch::Tensor out, torch::Tensor x, torch::Tensor packed, c10::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && x.stride(1) == 1, "x: rows of bf16");
  TORCH_CHECK(out.dim() == 2 && out.scalar_type() == at::kBFloat16 && out.stride(1) == 1, "out: rows of bf16");
  const int64_t m = x.size(0), k = x.size(1), nblocks = packed.size(0), kblocks = packed.size(1);
  TORCH_CHECK(kblocks * 32 == k && out.size(0) == m && out.size(1) == nblocks * 16, "shapes do not match");
  const float* bias_data = nullptr;
  torch::Tensor bias32;
  if (bias.has_value() && bias->defined()) {
    bias32 = bias->to(at::kFloat).contiguous();
    TORCH_CHECK(bias32.numel() == nblocks * 16, "bias has ", bias32.numel(), " values, expected ", nblocks * 16);
    bias_data = bias32.data_ptr<float>();
  }
  if (m == 0) return;
  const at::BFloat16* xs = x.data_ptr<at::BFloat16>();
  const at::BFloat16* ws = packed.data_ptr<at::BFloat16>();
  at::BFloat16* os = out.data_ptr<at::BFloat16>();
  const int64_t ldx = x.stride(0), ldo = out.stride(0);
  const int64_t npairs = (nblocks + 1) / 2;
  // Rows in panels that stay in L2 while a thread's weight columns stream past them; within a panel, each pair of
  // 16-feature blocks meets every 32-row block (its weight stays in L1 meanwhile).
  constexpr int64_t kPanel = 256;
  at::parallel_for(0, npairs, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float acc[4][256];
    int configured0 = -1, configured1 = -1;
    for (int64_t p0 = 0; p0 < m; p0 += kPanel) {
      const int64_t p1 = std::min(m, p0 + kPanel);
      for (int64_t pair = begin; pair < end; ++pair) {
        const int64_t nb0 = 2 * pair;
        const bool two = nb0 + 1 < nblocks;
        const at::BFloat16* b0 = ws + nb0 * kblocks * 512;
        const at::BFloat16* b1 = b0 + kblocks * 512;
        for (int64_t m0 = p0; m0 < p1; m0 += 32) {
          const int rows0 = static_cast<int>(std::min<int64_t>(16, p1 - m0));
          const int rows1 = static_cast<int>(std::clamp<int64_t>(p1 - m0 - 16, 0, 16));
          if (rows0 != configured0 || rows1 != configured1) {
            configure(rows0, rows1);
            configured0 = rows0;
            configured1 = rows1;
          }
          const at::BFloat16* a0 = xs + m0 * ldx;
          const at::BFloat16* a1 = a0 + 16 * ldx;
          _tile_zero(0);
          _tile_zero(1);
          if (rows1) {
            _tile_zero(2);
            _tile_zero(3);
          }
          for (int64_t kb = 0; kb < kblocks; ++kb) {
            if (m0 == p0) {  // the first row block brings this pair's weight in: ask for the next steps' early
              const char* ahead0 = reinterpret_cast<const char*>(b0 + (kb + 2) * 512);
              const char* ahead1 = reinterpret_cast<const char*>(b1 + (kb + 2) * 512);
              for (int line = 0; line < 1024; line += 64) {
                _mm_prefetch(ahead0 + line, _MM_HINT_T0);
                if (two) _mm_prefetch(ahead1 + line, _MM_HINT_T0);
              }
            }
            _tile_loadd(4, a0 + kb * 32, ldx * 2);
            _tile_loadd(6, b0 + kb * 512, 64);
            _tile_dpbf16ps(0, 4, 6);
            if (two) {
              _tile_loadd(7, b1 + kb * 512, 64);
              _tile_dpbf16ps(1, 4, 7);
            }
            if (rows1) {
              _tile_loadd(5, a1 + kb * 32, ldx * 2);
              _tile_dpbf16ps(2, 5, 6);
              if (two) _tile_dpbf16ps(3, 5, 7);
            }
          }
          _tile_stored(0, acc[0], 64);
          if (two) _tile_stored(1, acc[1], 64);
          if (rows1) {
            _tile_stored(2, acc[2], 64);
            if (two) _tile_stored(3, acc[3], 64);
          }
          for (int a = 0; a < (rows1 ? 2 : 1); ++a)
            for (int b = 0; b < (two ? 2 : 1); ++b) {
              const int64_t col = (nb0 + b) * 16;
              store_rows(acc[2 * a + b], a ? rows1 : rows0, bias_data ? bias_data + col : nullptr,
                         os + (m0 + 16 * a) * ldo + col, ldo);
            }
        }
      }
    }
    _tile_release();
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("pack_weight", &pack_weight);
  module.def("linear_into", &linear_into);
}
