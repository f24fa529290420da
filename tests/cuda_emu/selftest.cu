// Kernels that check the emulator itself (not part of the SDK): a block-wide shift through
// shared memory, with and without the barrier it needs, and a barrier only half the
// threads reach.

extern "C" __global__ void selftest_shift(const float* in, float* out, int use_barrier)
{
    __shared__ float values[1024];
    const int t = threadIdx.x;
    values[t] = in[blockIdx.x * blockDim.x + t];
    if (use_barrier) {
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + t] = values[(t + 1) % blockDim.x];
}

extern "C" __global__ void selftest_divergent_barrier(float* out)
{
    if (threadIdx.x % 2 == 1) {
        return;
    }
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
