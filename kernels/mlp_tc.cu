// Fused MLP on tensor cores for the native-cuda engine's fp16 and bf16
// precisions: each warp takes 16 rows through every layer with WMMA
// (16×16×16 tiles, half or bfloat16 operands, float accumulation); the
// weights of all layers sit in shared memory, the activations of a warp's
// rows in a per-warp scratch tile; bias and activation are applied in float.
//
// excite prepends the activation functions (kernels/mlp.cu's act_*) and
// defines: T (__half or __nv_bfloat16), TO_T (float → T), WARPS, MAXW (the
// widest padded layer), W_HALVES and B_FLOATS (the shared weight and bias
// sizes), N_IN, N_OUT, and `__device__ void network(...)`, a sequence of
// LAYER steps with each layer's padded sizes, offsets and activation.
// Layer widths are padded to multiples of 16 with zero weights and biases,
// so padded columns never reach a real output.

#include <mma.h>
using namespace nvcuda;

// acc[16][N] (row stride MAXW) = a[16][K] (row stride MAXW) · w[K][N] (row-major)
template <int K, int N>
__device__ __forceinline__ void tc_matmul(const T* a, const T* w, float* acc) {
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int k = 0; k < K / 16; ++k) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
            wmma::load_matrix_sync(fa, a + k * 16, MAXW);
            wmma::load_matrix_sync(fb, w + k * 16 * N + n * 16, N);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(acc + n * 16, c, MAXW, wmma::mem_row_major);
    }
}

// One layer: the matmul, then bias and activation into the next A tile (or y).
#define LAYER(K, N, D_OUT, W_OFF, B_OFF, ACT, P, LAST)                                  \
    tc_matmul<K, N>(act, sw + (W_OFF), acc);                                            \
    __syncwarp();                                                                       \
    for (int i = lane; i < 16 * (N); i += 32) {                                         \
        const int r = i / (N), j = i % (N);                                             \
        const float v = ACT(acc[r * MAXW + j] + sb[(B_OFF) + j], (P));                  \
        if (LAST) {                                                                     \
            if (j < (D_OUT) && row0 + r < rows) y[(size_t)(row0 + r) * N_OUT + j] = v;  \
        } else {                                                                        \
            act[r * MAXW + j] = TO_T(v);                                                \
        }                                                                               \
    }                                                                                   \
    __syncwarp();

// @network

// x [rows][N_IN] → y [rows][N_OUT]; w: the padded layers as T, b: the padded
// biases as float. With `grid`, row c·n_samples + s has input 0 = s·dt and
// inputs 1.. = x[c][0 .. N_IN − 1] instead (the time grid made here).
template <bool GRID>
__device__ __forceinline__ void mlp_tc_body(const float* __restrict__ x, float* __restrict__ y,
                                            const T* __restrict__ w, const float* __restrict__ b,
                                            long long rows, int n_samples, double dt) {
    __shared__ __align__(32) T sw[W_HALVES];
    __shared__ __align__(32) float sb[B_FLOATS];
    __shared__ __align__(32) T act_all[WARPS][16 * MAXW];
    __shared__ __align__(32) float acc_all[WARPS][16 * MAXW];
    for (int i = threadIdx.x; i < W_HALVES; i += blockDim.x) sw[i] = w[i];
    for (int i = threadIdx.x; i < B_FLOATS; i += blockDim.x) sb[i] = b[i];
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long row0 = ((long long)blockIdx.x * WARPS + warp) * 16;
    if (row0 >= rows) return;
    T* act = act_all[warp];
    float* acc = acc_all[warp];
    for (int i = lane; i < 16 * MAXW; i += 32) {
        const int r = i / MAXW, k = i % MAXW;
        const long long row = row0 + r;
        float v = 0.0f;
        if (k < N_IN && row < rows) {
            if (GRID) {
                const long long c = row / n_samples, s = row % n_samples;
                v = k == 0 ? (float)((double)s * dt) : x[(size_t)c * (N_IN - 1) + k - 1];
            } else {
                v = x[(size_t)row * N_IN + k];
            }
        }
        act[i] = TO_T(v);
    }
    __syncwarp();
    network(act, acc, sw, sb, y, row0, rows, lane);
}

extern "C" __global__ void mlp_tc(const float* __restrict__ x, float* __restrict__ y,
                                  const T* __restrict__ w, const float* __restrict__ b, int rows) {
    mlp_tc_body<false>(x, y, w, b, rows, 1, 0.0);
}

extern "C" __global__ void mlp_tc_grid(const float* __restrict__ cells, float* __restrict__ y,
                                       const T* __restrict__ w, const float* __restrict__ b,
                                       int n_cells, int n_samples, double dt) {
    mlp_tc_body<true>(cells, y, w, b, (long long)n_cells * n_samples, n_samples, dt);
}
