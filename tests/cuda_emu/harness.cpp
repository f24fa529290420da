// The kernels of sdk/cuda compiled for the CPU: each kernel gets an
// `extern "C" int emu_<kernel>(gx, gy, gz, bx, by, bz, shared_bytes, kernel args...)` entry
// point that runs the grid through cuda_emu.h and returns an emu::Status. Built by
// tests/cuda_emu/emulator.py with the same -D defines NVRTC gets; loaded with ctypes.
// Each .cu file's __shared__ variables go to their own linker section (its static shared
// memory, refilled per block); GNU ld provides __start_/__stop_ symbols for each.
#include "cuda_emu.h"

// Built with -fvisibility=hidden: the emulator's state (inline statics) stays private to
// each library (several, built with different defines, may be loaded at once); only the
// entry points are exported.
#define EMU_EXPORT extern "C" __attribute__((visibility("default")))

#define EMU_SHARED_SECTION emu_shared_mfcc
#include "mfcc.cu"
#undef EMU_SHARED_SECTION
#define EMU_SHARED_SECTION emu_shared_pose
#include "pose_image.cu"
#undef EMU_SHARED_SECTION
#define EMU_SHARED_SECTION emu_shared_state
#include "state.cu"
#undef EMU_SHARED_SECTION
#define EMU_SHARED_SECTION emu_shared_selftest
#include "selftest.cu"
#undef EMU_SHARED_SECTION

#define EMU_SECTION_BOUNDS(section)                                                     \
    extern "C" unsigned char __start_##section[] __attribute__((weak, visibility("hidden"))); \
    extern "C" unsigned char __stop_##section[] __attribute__((weak, visibility("hidden")));
EMU_SECTION_BOUNDS(emu_shared_mfcc)
EMU_SECTION_BOUNDS(emu_shared_pose)
EMU_SECTION_BOUNDS(emu_shared_state)
EMU_SECTION_BOUNDS(emu_shared_selftest)

EMU_EXPORT void emu_set_schedule(int schedule, unsigned long long seed)
{
    emu::config().schedule = schedule;
    emu::config().seed = seed;
}

EMU_EXPORT void emu_set_max_dynamic_shared(const char* kernel, unsigned bytes)
{
    emu::config().kernel_max_dynamic[kernel] = bytes;
}

EMU_EXPORT void emu_set_optin_shared_limit(unsigned bytes) { emu::config().optin_shared_bytes = bytes; }

EMU_EXPORT const char* emu_last_error() { return emu::config().last_error.c_str(); }

// The configuration checks alone (nothing runs): what a GPU rejects at launch.
EMU_EXPORT int emu_check_launch(const char* kernel, unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes,
                                unsigned static_bytes)
{
    return emu::check_launch(kernel, dim3(gx, gy, gz), dim3(bx, by, bz), shared_bytes,
                             static_bytes);
}

#define EMU_PARAMS(...) __VA_ARGS__
#define EMU_KERNEL(section, name, params, args)                                          \
    EMU_EXPORT int emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx,       \
                              unsigned by, unsigned bz, unsigned shared_bytes,          \
                              EMU_PARAMS params)                                         \
    {                                                                                    \
        return emu::launch(#name, dim3(gx, gy, gz), dim3(bx, by, bz), shared_bytes,      \
                           __start_##section, __stop_##section, [&] { name args; });    \
    }

EMU_KERNEL(emu_shared_mfcc, mfcc_frames,
           (const long long* items, const float* audio, const float* audio_ring,
            const long long* stream_pos, float* mfcc_ring, int ring_frames,
            const float* window, const float* mel, const float* dct),
           (items, audio, audio_ring, stream_pos, mfcc_ring, ring_frames, window, mel, dct))
EMU_KERNEL(emu_shared_mfcc, mfcc_commit,
           (const long long* items, const float* audio, float* audio_ring,
            long long* stream_pos),
           (items, audio, audio_ring, stream_pos))
EMU_KERNEL(emu_shared_mfcc, gather_feature_frames,
           (const long long* items, int num_frames, const float* mfcc_ring, int ring_frames,
            float* out),
           (items, num_frames, mfcc_ring, ring_frames, out))
EMU_KERNEL(emu_shared_mfcc, gather_mfcc,
           (const long long* items, int num_frames, const float* mfcc_ring, int ring_frames,
            float* out, long long stride_b, long long stride_t, long long stride_c),
           (items, num_frames, mfcc_ring, ring_frames, out, stride_b, stride_t, stride_c))
EMU_KERNEL(emu_shared_pose, pose_images,
           (const float* canonical, int n_joints, const int* bones, const float* reach,
            int n_bones, float x_min, float y_min, float sx, float sy, int height, int width,
            float* out),
           (canonical, n_joints, bones, reach, n_bones, x_min, y_min, sx, sy, height, width,
            out))
EMU_KERNEL(emu_shared_pose, preview_rgb,
           (const float* pixels, int n_joints, const int* bones, const float* reach,
            const int* layer_end, int n_layers, const float* layer_rgb,
            const float* background, const float* saliency, const float* bar_rgb,
            int bar_rows, int height, int width, unsigned char* out),
           (pixels, n_joints, bones, reach, layer_end, n_layers, layer_rgb, background,
            saliency, bar_rgb, bar_rows, height, width, out))
EMU_KERNEL(emu_shared_state, gather_state_rows,
           (const int* slots, int state_size, const float* table, float* state),
           (slots, state_size, table, state))
EMU_KERNEL(emu_shared_state, scatter_state_rows,
           (const int* slots, int state_size, const float* state_out, float* table),
           (slots, state_size, state_out, table))
EMU_KERNEL(emu_shared_selftest, selftest_shift, (const float* in, float* out, int offset, int use_barrier),
           (in, out, offset, use_barrier))
EMU_KERNEL(emu_shared_selftest, selftest_divergent_barrier, (float* out), (out))
EMU_KERNEL(emu_shared_selftest, selftest_split_barrier, (float* out), (out))
EMU_KERNEL(emu_shared_selftest, selftest_uninitialised_shared, (float* out, int write), (out, write))
EMU_KERNEL(emu_shared_selftest, selftest_dynamic_shared, (float* out), (out))
