// Host emulation of the CUDA C subset the kernels in sdk/cuda use, so the very same .cu
// text runs on the CPU (g++) and can be checked against the numpy references.
//
// How a launch runs: the launch configuration is checked against the device limits first
// (gridDim.x <= 2^31-1, gridDim.y/z <= 65535, <= 1024 threads per block, blockDim.z <= 64,
// static + dynamic shared memory <= 48 KiB unless the kernel opted in to more, up to the
// device's opt-in maximum): a violation fails the launch like CUDA_ERROR_INVALID_VALUE.
// Blocks then run one after another in a shuffled order. Inside a block every CUDA thread
// is a coroutine (ucontext) with its own stack. __syncthreads() switches back to the
// block's scheduler, which runs every thread up to its next barrier before letting any of
// them pass it, in an order chosen per phase (schedule: forward 0..n-1, reversed, or a
// seeded random permutation, the default). So code between two barriers runs for all
// threads before the next phase, exactly the CUDA contract, and a missing barrier shows up
// as wrong results whichever neighbour a thread reads. Barriers are matched by call site:
// threads waiting at different __syncthreads() (a divergent barrier), or leaving while
// others wait, fail the launch (undefined behaviour on a GPU).
// __shared__ variables live in one linker section per .cu file (harness.cpp names it); the
// section and the launch's dynamic shared memory are filled with 0xFF bytes (float NaN,
// int -1) before every block, so a block never sees another block's data and a read of
// shared memory nobody wrote shows up as NaN. The section size (all kernels of the file)
// is the static shared memory charged against the limit.
// Not emulated (the kernels must not use them): warp intrinsics, atomics, textures.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <ucontext.h>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline unsigned __brev(unsigned x)
{
    unsigned r = 0;
    for (int i = 0; i < 32; ++i, x >>= 1) r = (r << 1) | (x & 1u);
    return r;
}

#define EMU_STR2(x) #x
#define EMU_STR(x) EMU_STR2(x)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// EMU_SHARED_SECTION is (re)defined by harness.cpp before each .cu file it includes.
#define __shared__ static __attribute__((section(EMU_STR(EMU_SHARED_SECTION))))
#define __constant__ static
// Dynamic shared memory: the .cu files declare it through this macro (CUDA: extern
// __shared__ array); here it is the launch's buffer, refilled per block.
#define GRT_DYNAMIC_SHARED(type, name) type* name = (type*)emu::dynamic_shared()

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

// Launch results (the entry points' return values).
enum Status { OK = 0, BARRIER = 1, BAD_CONFIG = 2, SHARED_MEMORY = 3 };
// Thread order inside each phase of a block.
enum Schedule { FORWARD = 0, REVERSED = 1, RANDOM = 2 };

// Device limits (CUDA's for compute capability 7.5 .. 9.0).
constexpr unsigned long long MAX_GRID_X = 2147483647ULL;
constexpr unsigned MAX_GRID_YZ = 65535;
constexpr unsigned MAX_BLOCK_THREADS = 1024;
constexpr unsigned MAX_BLOCK_Z = 64;
constexpr unsigned DEFAULT_SHARED_BYTES = 48 * 1024;
// Canary bytes after the dynamic shared memory: a kernel writing past what the host
// asked for fails the launch.
constexpr unsigned GUARD_BYTES = 4096;
constexpr unsigned char GUARD = 0xA5;

struct Config {
    int schedule = RANDOM;
    unsigned long long seed = 1;
    unsigned optin_shared_bytes = 227 * 1024;  // the device's opt-in maximum (sm_90)
    std::map<std::string, unsigned> kernel_max_dynamic;  // cuFuncSetAttribute
    std::string last_error;
};

inline Config& config()
{
    static Config c;
    return c;
}

struct Block {
    ucontext_t scheduler;
    std::vector<ucontext_t> contexts;
    std::vector<std::vector<char>> stacks;
    std::vector<int> state;        // 0 runnable, 1 at barrier, 2 finished
    std::vector<const char*> site;  // barrier call site each waiting thread is at
    std::vector<int> line;
    std::vector<unsigned> order;
    int current = -1;
    const std::function<void()>* body = nullptr;
    std::vector<unsigned char> dynamic;  // the launch's dynamic shared memory + guard
    unsigned dynamic_bytes = 0;
    unsigned char* section_begin = nullptr;
    unsigned char* section_end = nullptr;
    unsigned long long rng = 1;
};

inline Block& block()
{
    static Block b;
    return b;
}

inline void* dynamic_shared()
{
    Block& b = block();
    return b.dynamic.empty() ? nullptr : b.dynamic.data();
}

inline unsigned long long next_random()
{
    // xorshift64*
    unsigned long long& x = block().rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 2685821657736338717ULL;
}

inline void fail(int* status, int code, const std::string& message)
{
    config().last_error = message;
    std::fprintf(stderr, "cuda_emu: %s\n", message.c_str());
    *status = code;
}

inline void shuffle(std::vector<unsigned>& order, int schedule)
{
    std::iota(order.begin(), order.end(), 0u);
    if (schedule == REVERSED) {
        std::reverse(order.begin(), order.end());
    } else if (schedule == RANDOM) {
        for (size_t i = order.size(); i > 1; --i) {
            std::swap(order[i - 1], order[next_random() % i]);
        }
    }
}

inline void thread_entry()
{
    Block& b = block();
    (*b.body)();
    b.state[b.current] = 2;
    // returning resumes uc_link = the scheduler
}

inline dim3 unflatten(unsigned long long i, dim3 d)
{
    return dim3(i % d.x, (i / d.x) % d.y, i / ((unsigned long long)d.x * d.y));
}

inline void run_block(const std::function<void()>& body, int* status)
{
    Block& b = block();
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const size_t stack_size = 64 * 1024;
    if (b.contexts.size() < n) {
        b.contexts.resize(n);
        b.stacks.resize(n);
    }
    b.state.assign(n, 0);
    b.site.assign(n, nullptr);
    b.line.assign(n, 0);
    b.order.resize(n);
    b.body = &body;
    // Fresh shared memory per block: NaN floats, -1 ints.
    if (b.section_begin != nullptr) std::memset(b.section_begin, 0xFF, b.section_end - b.section_begin);
    if (!b.dynamic.empty()) {
        std::memset(b.dynamic.data(), 0xFF, b.dynamic_bytes);
        std::memset(b.dynamic.data() + b.dynamic_bytes, GUARD, GUARD_BYTES);
    }
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
        shuffle(b.order, config().schedule);
        for (unsigned i : b.order) {
            if (b.state[i] == 2) continue;
            b.state[i] = 0;
            b.current = (int)i;
            threadIdx = unflatten(i, blockDim);
            swapcontext(&b.scheduler, &b.contexts[i]);
            if (b.state[i] == 1) ++waiting;
            if (b.state[i] != 2) ++alive;
        }
        char where[64];
        std::snprintf(where, sizeof where, "block (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
        for (unsigned i = 0; i < GUARD_BYTES && !b.dynamic.empty(); ++i) {
            if (b.dynamic[b.dynamic_bytes + i] != GUARD) {
                fail(status, SHARED_MEMORY, std::string("a thread of ") + where + " wrote " +
                     std::to_string(i) + " B past the " + std::to_string(b.dynamic_bytes) +
                     " B of dynamic shared memory the launch has");
                return;
            }
        }
        if (alive == 0) return;
        if (waiting != n) {
            fail(status, BARRIER, std::string("__syncthreads() not reached by every thread of ") +
                 where + " (some threads returned while others wait)");
            return;
        }
        for (unsigned i = 1; i < n; ++i) {
            if (b.line[i] != b.line[0] || std::strcmp(b.site[i], b.site[0]) != 0) {
                fail(status, BARRIER, std::string("threads of ") + where +
                     " wait at different __syncthreads() call sites: " + b.site[0] + ":" +
                     std::to_string(b.line[0]) + " (thread 0) and " + b.site[i] + ":" +
                     std::to_string(b.line[i]) + " (thread " + std::to_string(i) + ")");
                return;
            }
        }
    }
}

// The launch configuration checks of a GPU: OK, BAD_CONFIG or SHARED_MEMORY (with
// config().last_error saying why).
inline int check_launch(const char* kernel, dim3 grid, dim3 block_dim, unsigned dynamic_bytes,
                        unsigned static_bytes)
{
    int status = OK;
    char text[320];
    const unsigned long long threads = (unsigned long long)block_dim.x * block_dim.y * block_dim.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || grid.x > MAX_GRID_X ||
        grid.y > MAX_GRID_YZ || grid.z > MAX_GRID_YZ || threads > MAX_BLOCK_THREADS ||
        block_dim.z > MAX_BLOCK_Z) {
        std::snprintf(text, sizeof text,
                      "%s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u): "
                      "limits grid.x <= 2^31-1, grid.y/z <= %u, <= %u threads per block, "
                      "block.z <= %u (CUDA_ERROR_INVALID_VALUE)",
                      kernel, grid.x, grid.y, grid.z, block_dim.x, block_dim.y, block_dim.z,
                      MAX_GRID_YZ, MAX_BLOCK_THREADS, MAX_BLOCK_Z);
        fail(&status, BAD_CONFIG, text);
        return status;
    }
    unsigned limit = DEFAULT_SHARED_BYTES;
    auto optin = config().kernel_max_dynamic.find(kernel);
    if (optin != config().kernel_max_dynamic.end()) {
        limit = std::max(limit, std::min(config().optin_shared_bytes, static_bytes + optin->second));
    }
    if (static_bytes + dynamic_bytes > limit) {
        std::snprintf(text, sizeof text,
                      "%s: %u B static + %u B dynamic shared memory exceed the %u B the kernel "
                      "may use (opt in with cuFuncSetAttribute, at most %u B on this device)",
                      kernel, static_bytes, dynamic_bytes, limit, config().optin_shared_bytes);
        fail(&status, SHARED_MEMORY, text);
    }
    return status;
}

// Grid launch. kernel: its name (for the opt-in dynamic shared memory limit);
// section_begin/end: the .cu file's static shared memory; dynamic_bytes: the launch's.
// Returns a Status; config().last_error says why when it is not OK.
inline int launch(const char* kernel, dim3 grid, dim3 block_dim, unsigned dynamic_bytes,
                  unsigned char* section_begin, unsigned char* section_end,
                  const std::function<void()>& body)
{
    const unsigned static_bytes =
        section_begin == nullptr ? 0u : (unsigned)(section_end - section_begin);
    int status = check_launch(kernel, grid, block_dim, dynamic_bytes, static_bytes);
    if (status != OK) return status;
    Block& b = block();
    b.section_begin = section_begin;
    b.section_end = section_end;
    b.dynamic.assign(dynamic_bytes + GUARD_BYTES, 0xFF);
    b.dynamic_bytes = dynamic_bytes;
    b.rng = config().seed * 0x9E3779B97F4A7C15ULL + 1;
    gridDim = grid;
    blockDim = block_dim;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    std::vector<unsigned long long> order;
    if (blocks <= (1ULL << 22)) {  // shuffled block order (reversed for huge grids)
        order.resize(blocks);
        std::iota(order.begin(), order.end(), 0ULL);
        if (config().schedule == REVERSED) {
            std::reverse(order.begin(), order.end());
        } else if (config().schedule == RANDOM) {
            for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[next_random() % i]);
        }
    }
    for (unsigned long long k = 0; k < blocks; ++k) {
        const unsigned long long i = order.empty() ? blocks - 1 - k : order[k];
        blockIdx = unflatten(i, grid);
        run_block(body, &status);
        if (status != OK) break;
    }
    config().seed += 1;  // the next launch gets another order
    b.dynamic.clear();
    return status;
}

}  // namespace emu

__attribute__((noinline)) inline void emu_syncthreads_at(const char* file, int line)
{
    emu::Block& b = emu::block();
    const int me = b.current;
    b.state[me] = 1;
    b.site[me] = file;
    b.line[me] = line;
    swapcontext(&b.contexts[me], &b.scheduler);
}
#define __syncthreads() emu_syncthreads_at(__FILE__, __LINE__)
