// Fused MLP for the native-cuda engine: one thread evaluates one row through
// every layer, with the activations in registers.
//
// excite generates, per network, `#define N_IN`, `#define N_OUT` and
// `__device__ void mlp_row(const float* p, const float* a0, float* out)`,
// and inserts them at the marker below. Small networks are generated as
// straight-line code with the weights as literals (FFMA with an immediate
// operand: no loads at all, every intermediate a named register); larger
// ones as the DENSE loops below, reading the weights through the read-only
// cache (every thread of a warp reads the same weight: a broadcast).

__device__ __forceinline__ float act_linear(float x, float p) { return x; }
__device__ __forceinline__ float act_relu(float x, float p) { return fmaxf(x, 0.0f); }
__device__ __forceinline__ float act_leaky_relu(float x, float p) { return x >= 0.0f ? x : p * x; }
__device__ __forceinline__ float act_elu(float x, float p) { return x > 0.0f ? x : p * expm1f(x); }
__device__ __forceinline__ float act_tanh(float x, float p) { return tanhf(x); }
__device__ __forceinline__ float act_sigmoid(float x, float p) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float act_silu(float x, float p) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float act_gelu(float x, float p) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float act_gelu_tanh(float x, float p) { return 0.5f * x * (1.0f + tanhf(0.7978845608f * fmaf(0.044715f * x * x, x, x))); }
__device__ __forceinline__ float act_softplus(float x, float p) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

// dst[j] = act(b[j] + sum_k src[k] * w[k][j]), w row-major [in][out], summed over k in order.
#define DENSE(IN, OUT, SRC, DST, W, B, ACT, P)                              \
    for (int j = 0; j < (OUT); ++j) {                                       \
        float s = __ldg(&(B)[j]);                                           \
        for (int k = 0; k < (IN); ++k) s = fmaf((SRC)[k], __ldg(&(W)[k * (OUT) + j]), s); \
        (DST)[j] = ACT(s, (P));                                             \
    }

// @network

// Rows in, rows out: x [rows][N_IN], y [rows][N_OUT].
extern "C" __global__ void mlp(const float* __restrict__ x, float* __restrict__ y,
                               const float* __restrict__ p, int rows) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float a0[N_IN], out[N_OUT];
#pragma unroll
    for (int i = 0; i < N_IN; ++i) a0[i] = x[(size_t)r * N_IN + i];
    mlp_row(p, a0, out);
#pragma unroll
    for (int i = 0; i < N_OUT; ++i) y[(size_t)r * N_OUT + i] = out[i];
}

// Trajectories with the time grid made in the kernel: row c·n_samples + s
// has input 0 = s·dt (time, in double as the CPU grid computes it, then
// rounded) and inputs 1.. = cells[c][0 .. N_IN - 1]; y [cells][n_samples][N_OUT].
extern "C" __global__ void mlp_grid(const float* __restrict__ cells, float* __restrict__ y,
                                    const float* __restrict__ p, int n_cells, int n_samples,
                                    double dt) {
    const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (long long)n_cells * n_samples) return;
    const int c = (int)(r / n_samples), s = (int)(r % n_samples);
    float a0[N_IN], out[N_OUT];
    a0[0] = (float)((double)s * dt);
#pragma unroll
    for (int i = 1; i < N_IN; ++i) a0[i] = cells[(size_t)c * (N_IN - 1) + i - 1];
    mlp_row(p, a0, out);
#pragma unroll
    for (int i = 0; i < N_OUT; ++i) y[(size_t)r * N_OUT + i] = out[i];
}
