// Host emulation of the CUDA C subset the kernels in sdk/cuda use, so the very same .cu
// text runs on the CPU (g++) and can be checked against the numpy references.
//
// How a launch runs: blocks one after another; inside a block every CUDA thread is a
// coroutine (ucontext) with its own stack. __syncthreads() switches back to the block's
// scheduler, which runs thread 0, 1, ... up to their next barrier before letting any of
// them pass it. So code between two barriers runs for all threads before the next phase,
// exactly the CUDA contract, and a missing barrier shows up as wrong results (thread 0
// reads shared data that threads 1.. have not written yet). Threads that leave while
// others wait at a barrier are reported as an error (undefined behaviour on a GPU).
// __shared__ is `static`: one copy, seen by all threads of the running block.
// Not emulated (the kernels must not use them): warp intrinsics, atomics, textures.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ucontext.h>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __constant__ static

inline void sincospif(float x, float* s, float* c)
{
    *s = (float)std::sin(M_PI * (double)x);
    *c = (float)std::cos(M_PI * (double)x);
}
inline void sincosf(float x, float* s, float* c)
{
    *s = std::sin(x);
    *c = std::cos(x);
}
// Explicitly rounded float ops: plain float arithmetic (the library is built with
// -ffp-contract=off, so nothing is fused).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
using std::isfinite;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <class T> inline T __ldg(const T* p) { return *p; }

namespace emu {

struct Block {
    ucontext_t scheduler;
    std::vector<ucontext_t> contexts;
    std::vector<std::vector<char>> stacks;
    std::vector<int> state;  // 0 runnable, 1 at barrier, 2 finished
    int current = -1;
    const std::function<void()>* body = nullptr;
};

inline Block& block()
{
    static Block b;
    return b;
}

inline int& error_flag()
{
    static int flag = 0;
    return flag;
}

inline void thread_entry()
{
    Block& b = block();
    (*b.body)();
    b.state[b.current] = 2;
    // returning resumes uc_link = the scheduler
}

inline dim3 unflatten(unsigned i, dim3 d)
{
    return dim3(i % d.x, (i / d.x) % d.y, i / (d.x * d.y));
}

inline void run_block(const std::function<void()>& body)
{
    Block& b = block();
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const size_t stack_size = 64 * 1024;
    if (b.contexts.size() < n) {
        b.contexts.resize(n);
        b.stacks.resize(n);
    }
    b.state.assign(n, 0);
    b.body = &body;
    for (unsigned i = 0; i < n; ++i) {
        if (b.stacks[i].size() < stack_size) b.stacks[i].resize(stack_size);
        getcontext(&b.contexts[i]);
        b.contexts[i].uc_stack.ss_sp = b.stacks[i].data();
        b.contexts[i].uc_stack.ss_size = stack_size;
        b.contexts[i].uc_link = &b.scheduler;
        makecontext(&b.contexts[i], thread_entry, 0);
    }
    for (;;) {
        unsigned alive = 0, waiting = 0;
        for (unsigned i = 0; i < n; ++i) {
            if (b.state[i] == 2) continue;
            b.state[i] = 0;
            b.current = (int)i;
            threadIdx = unflatten(i, blockDim);
            swapcontext(&b.scheduler, &b.contexts[i]);
            if (b.state[i] == 1) ++waiting;
            if (b.state[i] != 2) ++alive;
        }
        if (alive == 0) return;
        if (waiting != alive || waiting != n) {
            std::fprintf(stderr, "cuda_emu: __syncthreads() not reached by every thread "
                                 "of block (%u,%u,%u)\n", blockIdx.x, blockIdx.y, blockIdx.z);
            error_flag() = 1;
            return;
        }
    }
}

// Grid launch: returns 0, or 1 when a block broke the barrier contract.
inline int launch(dim3 grid, dim3 block_dim, const std::function<void()>& body)
{
    gridDim = grid;
    blockDim = block_dim;
    error_flag() = 0;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3(x, y, z);
                run_block(body);
                if (error_flag()) return 1;
            }
    return 0;
}

}  // namespace emu

__attribute__((noinline)) inline void __syncthreads()
{
    emu::Block& b = emu::block();
    const int me = b.current;
    b.state[me] = 1;
    swapcontext(&b.contexts[me], &b.scheduler);
}
