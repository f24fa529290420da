// Probe kernels that check the emulator itself (not part of the SDK): each one has a bug
// the emulator must catch (tests/test_cuda_emulator.py).

// out[t] = in[(t + offset) mod n] through shared memory; without the barrier a thread may
// read its neighbour's slot before the neighbour wrote it (offset +1: the right
// neighbour, -1: the left one).
extern "C" __global__ void selftest_shift(const float* in, float* out, int offset,
                                          int use_barrier)
{
    __shared__ float values[1024];
    const int t = threadIdx.x;
    const int n = blockDim.x;
    values[t] = in[blockIdx.x * n + t];
    if (use_barrier) {
        __syncthreads();
    }
    out[blockIdx.x * n + t] = values[((t + offset) % n + n) % n];
}

// A barrier only the even threads reach (the odd ones return).
extern "C" __global__ void selftest_divergent_barrier(float* out)
{
    if (threadIdx.x % 2 == 1) {
        return;
    }
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// Every thread reaches a barrier, but not the same one: undefined behaviour on a GPU.
extern "C" __global__ void selftest_split_barrier(float* out)
{
    if (threadIdx.x % 2 == 0) {
        out[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        out[threadIdx.x] = 2.0f;
        __syncthreads();
    }
}

// Block b writes its shared slot only when `write` is set (and for block 0 always), then
// reads it: a later block that does not write must not see block 0's value.
extern "C" __global__ void selftest_uninitialised_shared(float* out, int write)
{
    __shared__ float value[1];
    if (threadIdx.x == 0 && (write || blockIdx.x == 0)) {
        value[0] = (float)blockIdx.x + 1.0f;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        out[blockIdx.x] = value[0];
    }
}

// out[t] = t + 1 through dynamic shared memory (blockDim.x floats).
extern "C" __global__ void selftest_dynamic_shared(float* out)
{
    GRT_DYNAMIC_SHARED(float, scratch);
    scratch[threadIdx.x] = (float)threadIdx.x + 1.0f;
    __syncthreads();
    out[threadIdx.x] = scratch[blockDim.x - 1 - threadIdx.x];
}
