// Forward Euler for independent cells: one thread per cell, the state kept in
// registers for all the steps between two stored samples.
//
// excite prepends `#define N_STATE`, `#define N_PARAM` and the model's
// `__device__ void rhs(const float* p, const float* x, float* dx)`.
// Layouts: init [N_STATE][n], params [N_PARAM][n], out [N_STATE][n_samples][n].

extern "C" __global__ void euler(const float* __restrict__ init,
                                 const float* __restrict__ params,
                                 float* __restrict__ out,
                                 int n, int n_samples, int steps_per_sample, float dt) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n) return;
    float p[N_PARAM], x[N_STATE], dx[N_STATE];
#pragma unroll
    for (int j = 0; j < N_PARAM; ++j) p[j] = params[(size_t)j * n + c];
#pragma unroll
    for (int i = 0; i < N_STATE; ++i) x[i] = init[(size_t)i * n + c];
    for (int s = 0; s < n_samples; ++s) {
        if (s > 0) {
            for (int k = 0; k < steps_per_sample; ++k) {
                rhs(p, x, dx);
#pragma unroll
                for (int i = 0; i < N_STATE; ++i) x[i] = fmaf(dt, dx[i], x[i]);
            }
        }
#pragma unroll
        for (int i = 0; i < N_STATE; ++i) out[((size_t)i * n_samples + s) * n + c] = x[i];
    }
}
