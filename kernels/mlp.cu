// Fused MLP for the native-cuda engine: one thread evaluates one row through
// every layer, activations in registers, weights read through the read-only
// cache (every thread of a warp reads the same weight: a broadcast).
//
// excite appends the kernel `mlp` for one network: a sequence of DENSE steps
// with the network's dimensions, parameter offsets and activations.

__device__ __forceinline__ float act_linear(float x, float p) { return x; }
__device__ __forceinline__ float act_relu(float x, float p) { return fmaxf(x, 0.0f); }
__device__ __forceinline__ float act_leaky_relu(float x, float p) { return x >= 0.0f ? x : p * x; }
__device__ __forceinline__ float act_elu(float x, float p) { return x > 0.0f ? x : p * expm1f(x); }
__device__ __forceinline__ float act_tanh(float x, float p) { return tanhf(x); }
__device__ __forceinline__ float act_sigmoid(float x, float p) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float act_silu(float x, float p) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float act_gelu(float x, float p) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

// dst[j] = act(b[j] + sum_k src[k] * w[k][j]), w row-major [in][out], summed over k in order.
#define DENSE(IN, OUT, SRC, DST, W, B, ACT, P)                              \
    for (int j = 0; j < (OUT); ++j) {                                       \
        float s = __ldg(&(B)[j]);                                           \
        for (int k = 0; k < (IN); ++k) s = fmaf((SRC)[k], __ldg(&(W)[k * (OUT) + j]), s); \
        (DST)[j] = ACT(s, (P));                                             \
    }
