// The generator's per-stream state rows on the device: gather the rows of a step's
// streams into the engine's `state` input, scatter `state_out` back into the table.
// Host side: sdk/runners/tensorrt.py (TensorRTStepper); both kernels are captured in the
// step's CUDA graph, so moving state costs no driver call per step.
//
// slots: int32 (rows,) table row of each batch row, -1 for a padded batch row (gather
// writes zeros, scatter skips it). table: float32 (capacity, state_size); state /
// state_out: float32 (rows, state_size), contiguous. Grid (ceil(state_size / blockDim.x),
// rows); rows <= 65535 (the engine's batch bucket).

extern "C" __global__ void gather_state_rows(const int* __restrict__ slots, int state_size,
                                             const float* __restrict__ table,
                                             float* __restrict__ state)
{
    const int row = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= state_size) {
        return;
    }
    const int slot = slots[row];
    state[(long long)row * state_size + i] =
        slot < 0 ? 0.0f : table[(long long)slot * state_size + i];
}

extern "C" __global__ void scatter_state_rows(const int* __restrict__ slots, int state_size,
                                              const float* __restrict__ state_out,
                                              float* __restrict__ table)
{
    const int row = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int slot = slots[row];
    if (i >= state_size || slot < 0) {
        return;
    }
    table[(long long)slot * state_size + i] = state_out[(long long)row * state_size + i];
}
